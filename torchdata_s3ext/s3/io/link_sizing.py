"""What one stream and one endpoint learn about the link, by the policy of :mod:`.sizing`: a stream's
:class:`PartSizing` (its part size, its parts in flight, what it saw) and, per endpoint, where its streams got
to and what streams of the current part size saw, added up, for this process's next streams (emptied in a
child after ``fork``). The part size is decided on that sum, once it holds enough (one stream is too short a
look: a 100 MB shard is read in a tenth of a second from a near server)."""
import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple

from .sizing import (DEFAULT_CONCURRENCY, DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE, Evidence, check_sizing_options,
                     first_part_size, is_better, most_in_flight, smaller_part_size)

__all__ = ["PartSizing", "fixed_sizing", "sizing_for"]


@dataclasses.dataclass(frozen=True)
class _Learned:
    """Where an endpoint's streams got to: their sizes and what streams of this part size saw (``evidence``);
    while smaller parts are on trial, the larger sizes and the seconds per byte they were read at
    (``trial_of``); once smaller parts did not do better, ``settled``."""

    memory_budget: int
    part_size: int
    in_flight: int
    evidence: Evidence = Evidence()
    trial_of: Optional[Tuple[int, int, float]] = None
    settled: bool = False


class _Endpoints:
    """What this process learned per endpoint; emptied in a child after ``fork`` (with a fresh lock)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.learned: Dict[str, _Learned] = {}


_ENDPOINTS = _Endpoints()
os.register_at_fork(after_in_child=_ENDPOINTS.reset)


def _decided(learned: _Learned, in_flight: int, most: int) -> _Learned:
    """What the endpoint goes on with, once its streams of this part size saw enough (``learned.evidence``):
    the smaller parts on trial kept (if read faster) or given up for good; smaller parts put on trial (the
    budget full, the reads held back, the link far); else the same, looking afresh."""
    evidence = learned.evidence
    fresh = dataclasses.replace(learned, evidence=Evidence())
    if learned.trial_of is not None:
        larger, larger_in_flight, before = learned.trial_of
        if is_better(evidence.seconds_per_byte, before):
            return dataclasses.replace(fresh, trial_of=None)
        return _Learned(learned.memory_budget, larger, larger_in_flight, settled=True)
    if learned.settled or in_flight < most or not evidence.held_back:
        return fresh
    smaller = smaller_part_size(learned.memory_budget, learned.part_size, evidence.latency_s, evidence.rate)
    if smaller is None:
        return fresh
    # as many bytes in flight, in parts half as large
    return _Learned(learned.memory_budget, smaller, min(most_in_flight(learned.memory_budget, smaller), 2 * in_flight + 1),
                    trial_of=(learned.part_size, in_flight, evidence.seconds_per_byte))


class PartSizing:
    """One stream's parts: ``part_size`` (fixed for the stream), ``in_flight`` (the parts it keeps requested
    ahead, growing when it waits), ``most_in_flight`` (what its threads and buffers are sized for).

    The reader calls :meth:`wait_for` for each part it needs in steady state and :meth:`finished` when it
    closes, the part source :meth:`timed` with each part's seconds, and a backend that sees an answer's
    head :meth:`first_byte` with its latency. Only an adaptive sizing (``endpoint`` given) changes anything.
    """

    def __init__(self, part_size: int, in_flight: int, most: int, memory_budget: int,
                 endpoint: Optional[str] = None, learned: Optional[_Learned] = None) -> None:
        self.part_size = part_size
        self.in_flight = in_flight
        self.most_in_flight = most
        self.memory_budget = memory_budget
        self.endpoint = endpoint
        #: what this stream saw (added to the endpoint's when it finishes)
        self.evidence = Evidence()
        self._learned = learned or _Learned(memory_budget, part_size, in_flight)  # as the stream found it
        self._last_take: Optional[float] = None  # when the reader last took a part
        self._lock = threading.Lock()

    @classmethod
    def for_endpoint(cls, endpoint: str, memory_budget: int) -> "PartSizing":
        """Where the endpoint's last stream of the same budget got to, else its first part size and 6 in flight."""
        with _ENDPOINTS.lock:
            learned = _ENDPOINTS.learned.get(endpoint)
        if learned is None or learned.memory_budget != memory_budget:
            learned = _Learned(memory_budget, first_part_size(memory_budget), DEFAULT_CONCURRENCY)
        most = most_in_flight(memory_budget, learned.part_size)
        return cls(learned.part_size, min(learned.in_flight, most), most, memory_budget, endpoint, learned)

    @property
    def adaptive(self) -> bool:
        return self.endpoint is not None

    def wait_for(self, part: "concurrent.futures.Future[Any]", steady: bool = True) -> None:
        """The reader needs ``part`` now: wait for it. In ``steady`` state (not the first part after opening or
        a seek, which every reader waits for), a wait is the link's doing, and puts one more part in flight."""
        if not self.adaptive:
            return
        began = arrived = time.monotonic()
        if not part.done():
            concurrent.futures.wait([part])
            arrived = time.monotonic()
        if not steady:
            self._last_take = arrived
            return
        # the part before this one was read (and this one waited for) since the last take
        read = Evidence() if self._last_take is None else Evidence(read_seconds=arrived - self._last_take,
                                                                   read_bytes=self.part_size)
        self._last_take = arrived
        self._add(dataclasses.replace(read, wait_seconds=arrived - began) if arrived > began else read)
        if arrived > began and self.in_flight < self.most_in_flight:
            self.in_flight += 1
            self._learn(in_flight=self.in_flight)

    def first_byte(self, latency_s: float) -> None:
        """A backend saw an answer's head ``latency_s`` after its request."""
        self._add(Evidence(latencies=1, latency_sum=latency_s))

    def timed(self, size: int, seconds: float) -> None:
        """A part of ``size`` bytes took ``seconds``, request to last byte (the short last part is left out)."""
        if self.adaptive and size >= self.part_size:
            self._add(Evidence(timings=1, seconds_per_byte_sum=max(seconds - self.evidence.latency_s, 1e-9) / size))

    def finished(self) -> None:
        """The stream is closed: what it saw is added to what the endpoint's streams of its part size saw, and
        once that is enough, the part size is decided on (:func:`_decided`)."""
        if not self.adaptive:
            return
        with _ENDPOINTS.lock:
            now = self._now()
            if now.part_size != self.part_size:
                return  # a stream of parts the endpoint has left: no say
            now = dataclasses.replace(now, evidence=now.evidence.plus(self.evidence))
            if now.evidence.enough:
                now = _decided(now, self.in_flight, self.most_in_flight)
            _ENDPOINTS.learned[self.endpoint] = now  # type: ignore[index]

    def _add(self, seen: Evidence) -> None:
        with self._lock:
            self.evidence = self.evidence.plus(seen)

    def _now(self) -> _Learned:
        """What the endpoint learned for this budget so far (what this stream found, if nothing since); the
        caller holds the lock."""
        now = _ENDPOINTS.learned.get(self.endpoint, self._learned)  # type: ignore[arg-type]
        return now if now.memory_budget == self.memory_budget else self._learned

    def _learn(self, **changes: Any) -> None:
        """Change what the endpoint learned, only from a stream of its current part size."""
        with _ENDPOINTS.lock:
            now = self._now()
            if now.part_size == self.part_size:
                _ENDPOINTS.learned[self.endpoint] = dataclasses.replace(now, **changes)  # type: ignore[index]


def fixed_sizing(part_size: int, concurrency: int) -> PartSizing:
    """The user's ``part_size`` and ``concurrency``, never adapted."""
    if part_size < 1 or concurrency < 1:
        raise ValueError(f"part_size and concurrency must be positive, got {part_size} and {concurrency}")
    return PartSizing(part_size, concurrency, concurrency, (concurrency + 1) * part_size)


def sizing_for(endpoint: str, part_size: Optional[int] = None, concurrency: Optional[int] = None,
               memory_budget: Optional[int] = None) -> PartSizing:
    """A ranged backend's sizing from its options (checked by :func:`~.sizing.check_sizing_options`): fixed
    where the user gave ``part_size`` or ``concurrency`` (the other at its default), else adapted within
    ``memory_budget`` (default :data:`~.sizing.DEFAULT_MEMORY_BUDGET`) for ``endpoint`` (what names the link:
    the backend and its endpoint)."""
    check_sizing_options(part_size, concurrency, memory_budget)
    if part_size is None and concurrency is None:
        return PartSizing.for_endpoint(endpoint, DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget)
    return fixed_sizing(DEFAULT_PART_SIZE if part_size is None else part_size,
                        DEFAULT_CONCURRENCY if concurrency is None else concurrency)
