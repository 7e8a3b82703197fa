"""How large a ranged reader's parts are and how many are in flight: fixed by the user, or adapted to the link
within a memory budget.

One connection is limited on its own: it waits for each answer's first byte (``latency``, ~30 ms to S3), then
receives at its own rate (~90 MB/s from S3), so ``n`` parts of ``part_size`` bytes in flight deliver about::

    n * part_size / (latency + part_size / rate)

while the reader holds ``(n + 1) * part_size`` bytes of parts (the ``n`` in flight and the one being read).

:class:`PartSizing` adapts ``n`` and ``part_size`` unless the user fixed either (:func:`fixed_sizing`):

- within a stream, the part size stays, and one more part goes in flight each time the reader had to wait
  for a part in steady state (not for the first part after opening or a seek), up to what ``memory_budget``
  allows (and :data:`MOST_IN_FLIGHT`, the connections one stream takes of its client's pool);
- when the reader still waits with the budget full, and the link is far (the first byte takes at least
  :data:`FAR_LATENCY_SHARE` of a part's time, so its connections are each limited on their own), the next
  stream of the endpoint uses parts half as large, twice as many for the same memory, if the model above
  says that delivers at least :data:`WORTH_IT` times more; never below :data:`MIN_PART_SIZE` (each request
  costs CPU) nor below what one connection receives in one latency. On a near link (loopback, the same rack)
  the first byte is almost free and the server or the CPU limits, which smaller requests only load more: the
  part size stays.

What is learned (part size, parts in flight, latency, rate) is kept per endpoint for this process's next
streams: the next shard starts where the last one got to, and so does the one the prefetch opens.
"""
import dataclasses
import os
import threading
from typing import Dict, Optional

__all__ = ["DEFAULT_PART_SIZE", "DEFAULT_CONCURRENCY", "DEFAULT_MEMORY_BUDGET", "MIN_PART_SIZE", "MOST_IN_FLIGHT",
           "PartSizing", "SIZING_OPTIONS", "check_memory_budget", "check_sizing_options", "fixed_sizing", "sizing_for", "first_part_size", "most_in_flight",
           "smaller_part_size"]

DEFAULT_PART_SIZE = 16 << 20
DEFAULT_CONCURRENCY = 6
#: the parts' memory one open object's reader may hold by default: today's ``(6 + 1) x 16 MiB``
DEFAULT_MEMORY_BUDGET = (DEFAULT_CONCURRENCY + 1) * DEFAULT_PART_SIZE
#: the smallest part the sizing chooses (tests lower it through ``sizing.MIN_PART_SIZE``)
MIN_PART_SIZE = 4 << 20
#: the most parts one stream has in flight: a stream and the one prefetched fill the boto3 client's 32 connections
MOST_IN_FLIGHT = 16
#: the share of a part's time spent waiting for its first byte from which a link counts as far
FAR_LATENCY_SHARE = 0.1
#: how much more the model must promise before the parts are halved
WORTH_IT = 1.2
#: the options of the ranged backends that size their parts
SIZING_OPTIONS = ("part_size", "concurrency", "memory_budget")
_SMOOTHING = 0.3  # weight of the newest timing in the moving averages
_TIMINGS_TO_DECIDE = 3  # parts timed before the part size may change


def check_memory_budget(memory_budget: object) -> int:
    """``memory_budget`` if it holds two parts of :data:`MIN_PART_SIZE` (one read, one in flight), else ``ValueError``."""
    least = 2 * MIN_PART_SIZE
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < least:
        raise ValueError(f"memory_budget must be a number of bytes that holds two parts of {MIN_PART_SIZE} bytes "
                         f"(one read, one in flight): at least {least}, got {memory_budget!r}")
    return memory_budget


def most_in_flight(memory_budget: int, part_size: int) -> int:
    """The most parts in flight ``memory_budget`` allows beside the one being read (at least 1).

    >>> most_in_flight(112 << 20, 16 << 20), most_in_flight(112 << 20, 4 << 20)
    (6, 16)
    """
    return max(1, min(memory_budget // part_size - 1, MOST_IN_FLIGHT))


def first_part_size(memory_budget: int) -> int:
    """The part size of an endpoint's first stream: 16 MiB, halved (not below :data:`MIN_PART_SIZE`) until the
    budget holds 6 in flight and one read (a budget holds at least two of the smallest: :func:`check_memory_budget`).

    >>> [first_part_size(mib << 20) >> 20 for mib in (112, 64, 20, 8)]
    [16, 8, 4, 4]
    """
    part_size = DEFAULT_PART_SIZE
    while memory_budget // part_size < DEFAULT_CONCURRENCY + 1 and part_size // 2 >= MIN_PART_SIZE:
        part_size //= 2
    return part_size


def _delivers(n: int, part_size: int, latency_s: float, rate: float) -> float:
    return n * part_size / (latency_s + part_size / rate)


def smaller_part_size(memory_budget: int, part_size: int, latency_s: float, rate: float) -> Optional[int]:
    """Half ``part_size``, when the budget is what limits (the reader waited with it full) and smaller parts
    are worth it: the link is far (``latency_s`` is :data:`FAR_LATENCY_SHARE` of a part's time at ``rate``
    bytes/s per connection), the half is at least :data:`MIN_PART_SIZE` and one latency's bytes, and twice
    the parts in flight deliver :data:`WORTH_IT` times more; else ``None``.

    >>> smaller_part_size(112 << 20, 16 << 20, 0.030, 90e6) >> 20  # S3: 30 ms, 90 MB/s per connection
    8
    >>> smaller_part_size(112 << 20, 16 << 20, 0.001, 300e6) is None  # loopback: the first byte is free
    True
    """
    half = part_size // 2
    part_time = latency_s + part_size / rate
    if latency_s < FAR_LATENCY_SHARE * part_time or half < max(MIN_PART_SIZE, latency_s * rate):
        return None
    now = _delivers(most_in_flight(memory_budget, part_size), part_size, latency_s, rate)
    then = _delivers(most_in_flight(memory_budget, half), half, latency_s, rate)
    return half if then >= WORTH_IT * now else None


@dataclasses.dataclass(frozen=True)
class _Learned:
    """Where an endpoint's last stream got to."""

    memory_budget: int
    part_size: int
    in_flight: int


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

    The reader calls :meth:`waited` when it had to wait for a part in steady state, the part source
    :meth:`timed` with each part's seconds, and a backend that sees an answer's first byte
    :meth:`first_byte` with its latency. Only an adaptive sizing (``endpoint`` given) changes anything.
    """

    def __init__(self, part_size: int, in_flight: int, most: int, memory_budget: int,
                 endpoint: Optional[str] = None) -> None:
        self.part_size = part_size
        self.in_flight = in_flight
        self.most_in_flight = most
        self.memory_budget = memory_budget
        self.endpoint = endpoint
        self.latency_s = 0.0  # moving average of the time to an answer's first byte
        self.seconds_per_byte = 0.0  # moving average over parts of (seconds - latency) / bytes
        self._timings = 0
        self._lock = threading.Lock()

    @classmethod
    def for_endpoint(cls, endpoint: str, memory_budget: int) -> "PartSizing":
        """Where the endpoint's last stream of the same budget got to, else its first part size and 6 in flight."""
        with _ENDPOINTS.lock:
            learned = _ENDPOINTS.learned.get(endpoint)
        if learned is None or learned.memory_budget != memory_budget:
            learned = _Learned(memory_budget, first_part_size(memory_budget), DEFAULT_CONCURRENCY)
        most = most_in_flight(memory_budget, learned.part_size)
        return cls(learned.part_size, min(learned.in_flight, most), most, memory_budget, endpoint)

    @property
    def adaptive(self) -> bool:
        return self.endpoint is not None

    def waited(self) -> None:
        """The reader waited for a part in steady state: one more in flight, or, with the budget full, maybe
        smaller parts for the endpoint's next stream."""
        if not self.adaptive:
            return
        if self.in_flight < self.most_in_flight:
            self.in_flight += 1
            self._learn(self.part_size, self.in_flight)
            return
        smaller = self._smaller_part_size()
        if smaller is not None:  # as many bytes in flight, in parts half as large
            self._learn(smaller, min(most_in_flight(self.memory_budget, smaller), 2 * self.in_flight + 1))

    def first_byte(self, latency_s: float) -> None:
        """A backend saw an answer's first byte ``latency_s`` after its request."""
        with self._lock:
            self.latency_s = latency_s if not self.latency_s else _average(self.latency_s, latency_s)

    def timed(self, size: int, seconds: float) -> None:
        """A part of ``size`` bytes took ``seconds``, request to last byte."""
        if not self.adaptive or size < self.part_size:
            return  # the short last part would weigh its latency more
        with self._lock:
            per_byte = max(seconds - self.latency_s, 1e-9) / size
            self.seconds_per_byte = per_byte if not self._timings else _average(self.seconds_per_byte, per_byte)
            self._timings += 1

    def _smaller_part_size(self) -> Optional[int]:
        with self._lock:
            if self._timings < _TIMINGS_TO_DECIDE:
                return None
            latency_s, rate = self.latency_s, 1 / self.seconds_per_byte
        return smaller_part_size(self.memory_budget, self.part_size, latency_s, rate)

    def _learn(self, part_size: int, in_flight: int) -> None:
        with _ENDPOINTS.lock:
            _ENDPOINTS.learned[self.endpoint] = _Learned(self.memory_budget, part_size, in_flight)  # type: ignore[index]


def _average(old: float, new: float) -> float:
    return (1 - _SMOOTHING) * old + _SMOOTHING * new



def check_sizing_options(part_size: object = None, concurrency: object = None, memory_budget: object = None) -> None:
    """``ValueError`` unless the options are positive whole numbers, and ``memory_budget`` comes alone (the
    parts sized to it) and holds two of the smallest parts (:func:`check_memory_budget`)."""
    for name, value in (("part_size", part_size), ("concurrency", concurrency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if memory_budget is not None:
        if part_size is not None or concurrency is not None:
            raise ValueError(f"give memory_budget (the parts sized to it) or part_size/concurrency (fixed), not "
                             f"both: got memory_budget={memory_budget!r}, part_size={part_size!r}, "
                             f"concurrency={concurrency!r}")
        check_memory_budget(memory_budget)


def fixed_sizing(part_size: int, concurrency: int) -> PartSizing:
    """The user's ``part_size`` and ``concurrency``, never adapted."""
    if part_size < 1 or concurrency < 1:
        raise ValueError(f"part_size and concurrency must be positive, got {part_size} and {concurrency}")
    return PartSizing(part_size, concurrency, concurrency, (concurrency + 1) * part_size)


def sizing_for(endpoint: str, part_size: Optional[int] = None, concurrency: Optional[int] = None,
               memory_budget: Optional[int] = None) -> PartSizing:
    """A ranged backend's sizing from its options (checked by :func:`check_sizing_options`): fixed where the
    user gave ``part_size`` or ``concurrency`` (the other at its default), else adapted within
    ``memory_budget`` (default :data:`DEFAULT_MEMORY_BUDGET`) for ``endpoint`` (what names the link: the
    backend and its endpoint)."""
    check_sizing_options(part_size, concurrency, memory_budget)
    if part_size is None and concurrency is None:
        return PartSizing.for_endpoint(endpoint, DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget)
    return fixed_sizing(DEFAULT_PART_SIZE if part_size is None else part_size,
                        DEFAULT_CONCURRENCY if concurrency is None else concurrency)
