"""What one stream and one endpoint learn about the link, by the policy of :mod:`.sizing`: a stream's
:class:`PartSizing` (its part size, its parts in flight, the timings it saw) and, per endpoint, where the
last stream got to, for this process's next streams (emptied in a child after ``fork``)."""
import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Dict, Optional, Tuple

from .sizing import (DEFAULT_CONCURRENCY, DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE, HELD_BACK, check_sizing_options,
                     first_part_size, is_better, most_in_flight, smaller_part_size)

__all__ = ["PartSizing", "fixed_sizing", "sizing_for"]

_SMOOTHING = 0.3  # weight of the newest timing in the moving averages
_TIMINGS_TO_DECIDE = 3  # parts timed before the part size may change


@dataclasses.dataclass(frozen=True)
class _Learned:
    """Where an endpoint's last stream got to: its sizes; while smaller parts are on trial, the larger sizes
    and the seconds per byte their stream was read at (``trial_of``); once smaller parts did not do better,
    ``settled``."""

    memory_budget: int
    part_size: int
    in_flight: int
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
        self.latency_s = 0.0  # moving average of the time to an answer's first byte
        self.seconds_per_byte = 0.0  # moving average over parts of (seconds - latency) / bytes
        self.wait_seconds = 0.0  # how long reads waited for parts, in steady state
        self.read_seconds = 0.0  # from the first part taken in steady state to the last one
        self.parts_read = 0  # parts taken since the first one in steady state
        self._read_from: Optional[float] = None
        self._began_trial = False
        self._timings = 0
        self._learned = learned or _Learned(memory_budget, part_size, in_flight)  # as the stream found it
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

    @property
    def read_seconds_per_byte(self) -> float:
        """How fast the stream was read, waits included, from its first part in steady state (0: unknown yet)."""
        return self.read_seconds / (self.parts_read * self.part_size) if self.parts_read else 0.0

    def wait_for(self, part: "concurrent.futures.Future[object]") -> None:
        """The reader needs ``part`` now, in steady state: wait for it, and if that took any time, :meth:`waited`."""
        if not self.adaptive:
            return
        began = arrived = time.monotonic()
        if not part.done():
            concurrent.futures.wait([part])
            arrived = time.monotonic()
        if self._read_from is None:
            self._read_from = began
        else:
            self.parts_read += 1
            self.read_seconds = arrived - self._read_from
        if arrived > began:
            self.waited(arrived - began)

    def waited(self, seconds: float) -> None:
        """A read waited ``seconds`` for a part in steady state: one more in flight, or, with the budget full,
        maybe smaller parts on trial for the endpoint's next stream."""
        if not self.adaptive:
            return
        self.wait_seconds += seconds
        if self.in_flight < self.most_in_flight:
            self.in_flight += 1
            self._learn(part_size=self.part_size, in_flight=self.in_flight)
            return
        now = self._now()
        # the link, not the reader, sets the pace (judged over a few parts)
        held_back = self.parts_read >= _TIMINGS_TO_DECIDE and self.wait_seconds >= HELD_BACK * self.read_seconds
        smaller = None if now.settled or now.trial_of or not held_back else self._smaller_part_size()
        if smaller is not None:  # as many bytes in flight, in parts half as large
            self._began_trial = self._learn(part_size=smaller, in_flight=min(most_in_flight(self.memory_budget, smaller), 2 * self.in_flight + 1),
                        trial_of=(self.part_size, self.in_flight, self.read_seconds_per_byte))

    def first_byte(self, latency_s: float) -> None:
        """A backend saw an answer's head ``latency_s`` after its request."""
        with self._lock:
            self.latency_s = latency_s if not self.latency_s else _average(self.latency_s, latency_s)

    def timed(self, size: int, seconds: float) -> None:
        """A part of ``size`` bytes took ``seconds``, request to last byte."""
        if not self.adaptive:
            return
        if size < self.part_size:
            return  # the short last part would weigh its latency more
        with self._lock:
            per_byte = max(seconds - self.latency_s, 1e-9) / size
            self.seconds_per_byte = per_byte if not self._timings else _average(self.seconds_per_byte, per_byte)
            self._timings += 1

    def finished(self) -> None:
        """The stream is closed. If it put smaller parts on trial, the speed it was read at, start to end, is
        what they are compared with. If it read smaller parts on trial, the endpoint keeps them only if it was
        read faster; else it goes back to the larger parts, settled."""
        if not self.adaptive or self.parts_read < _TIMINGS_TO_DECIDE:
            return
        with _ENDPOINTS.lock:
            now = _ENDPOINTS.learned.get(self.endpoint)  # type: ignore[arg-type]
            if now is None or now.trial_of is None or now.memory_budget != self.memory_budget:
                return
            larger, in_flight, before = now.trial_of
            if self._began_trial:
                now = dataclasses.replace(now, trial_of=(larger, in_flight, self.read_seconds_per_byte))
            elif self._learned.trial_of is None or self.part_size != now.part_size:
                return  # a stream of neither size on trial
            elif is_better(self.read_seconds_per_byte, before):
                now = dataclasses.replace(now, trial_of=None)
            else:
                now = _Learned(self.memory_budget, larger, in_flight, settled=True)
            _ENDPOINTS.learned[self.endpoint] = now  # type: ignore[index]

    def _smaller_part_size(self) -> Optional[int]:
        with self._lock:
            if self._timings < _TIMINGS_TO_DECIDE:
                return None
            latency_s, rate = self.latency_s, 1 / self.seconds_per_byte
        return smaller_part_size(self.memory_budget, self.part_size, latency_s, rate)

    def _now(self) -> _Learned:
        """What the endpoint learned for this budget so far (what this stream found, if nothing since)."""
        with _ENDPOINTS.lock:
            now = _ENDPOINTS.learned.get(self.endpoint, self._learned)  # type: ignore[arg-type]
        return now if now.memory_budget == self.memory_budget else self._learned

    def _learn(self, **changes: object) -> bool:
        """Change what the endpoint learned, keeping its trial and whether it is settled unless changed; only
        from a stream of the endpoint's current part size (an older stream, of other parts, has no say)."""
        now = self._now()
        if now.part_size != self.part_size:
            return False
        with _ENDPOINTS.lock:
            _ENDPOINTS.learned[self.endpoint] = dataclasses.replace(now, **changes)  # type: ignore[index, arg-type]
        return True


def _average(old: float, new: float) -> float:
    return (1 - _SMOOTHING) * old + _SMOOTHING * new


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
