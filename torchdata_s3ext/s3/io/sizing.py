"""How large a ranged reader's parts are and how many are in flight: the policy's decisions, as pure functions,
and the options that choose it. :mod:`.link_sizing` holds what one stream and one endpoint learn.

One connection is limited on its own: it waits for each answer's first byte (``latency``, ~30 ms to S3), then
receives at its own rate (~90 MB/s from S3), so ``n`` parts of ``part_size`` bytes in flight deliver about::

    n * part_size / (latency + part_size / rate)

while the reader holds ``(n + 1) * part_size`` bytes of parts (the ``n`` in flight and the one being read).

:class:`~.link_sizing.PartSizing` adapts ``n`` and ``part_size`` unless the user fixed either:

- within a stream, the part size stays, and one more part goes in flight each time the reader had to wait
  for a part in steady state (not for the first part after opening or a seek), up to what ``memory_budget``
  allows (and :data:`MOST_IN_FLIGHT`, the connections one stream takes of its client's pool);
- the part size is decided on what an endpoint's streams of that part size saw, added up (:class:`Evidence`),
  once they were read for :data:`EVIDENCE_SECONDS`. When the budget was full, reads still waited
  :data:`HELD_BACK` of the reading time or more (the link set the pace, not the reader), and the link looks
  far (a connection receives less than :data:`SLOW_CONNECTION`: its connections look limited each on their
  own, so more of them add up), the endpoint's next streams try parts half as large, twice as many for the same memory, if the model above says that
  delivers :data:`WORTH_IT` times more; never below :data:`MIN_PART_SIZE` (each request costs CPU) nor
  below what one connection receives in one latency;
- the smaller parts are kept only if their streams were read faster, waits included (:func:`is_better`),
  over as long a look; else the endpoint goes back to the larger parts, and stays there. (Slow connections
  can also share one limit: a proxy's or a server's CPU, or this client's, whose GIL every socket read
  waits for; more and smaller requests then only load it more, and the trial shows it.)

Only the connections' rate tells near from far: the time to an answer's head, as a Python client measures it,
includes its wait for the GIL, and is as long on a busy loopback (15-60 ms) as from S3.

What is learned is kept per endpoint for this process's next streams: the next shard starts where the last
one got to, and so does the one the prefetch opens.
"""
import dataclasses
from typing import Optional

__all__ = ["Evidence", "DEFAULT_PART_SIZE", "DEFAULT_CONCURRENCY", "DEFAULT_MEMORY_BUDGET", "MIN_PART_SIZE", "MOST_IN_FLIGHT",
           "HELD_BACK", "SIZING_OPTIONS", "check_memory_budget", "check_sizing_options", "is_better", "first_part_size", "most_in_flight",
           "smaller_part_size"]

DEFAULT_PART_SIZE = 16 << 20
DEFAULT_CONCURRENCY = 6
#: the parts' memory one open object's reader may hold by default: today's ``(6 + 1) x 16 MiB``
DEFAULT_MEMORY_BUDGET = (DEFAULT_CONCURRENCY + 1) * DEFAULT_PART_SIZE
#: the smallest part the sizing chooses (tests lower it through ``sizing.MIN_PART_SIZE``)
MIN_PART_SIZE = 4 << 20
#: the most parts one stream has in flight: a stream and the one prefetched fill the boto3 client's 32 connections
MOST_IN_FLIGHT = 16
#: a link is far if its connections each receive less than this (bytes/s; S3 gives one ~90 MB/s, a near server 400+)
SLOW_CONNECTION = 250e6
#: how much more the model must promise before the parts are halved
WORTH_IT = 1.2
#: the options of the ranged backends that size their parts
SIZING_OPTIONS = ("part_size", "concurrency", "memory_budget")
#: the share of a stream's reading time spent waiting for parts from which the link sets the pace
HELD_BACK = 0.1
#: how much less time per byte a stream of smaller parts must take than the larger parts did, to keep them
BETTER = 0.9
#: the reading time (seconds, over an endpoint's streams of one part size) a decision on the part size needs
EVIDENCE_SECONDS = 0.5
_EVIDENCE_PARTS = 3  # and the parts timed


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
    are worth it: the link is far (``rate``, bytes/s per connection after its first byte, is below
    :data:`SLOW_CONNECTION`), the half is at least :data:`MIN_PART_SIZE` and one latency's bytes, and
    twice the parts in flight deliver :data:`WORTH_IT` times more by the model; else ``None``.

    >>> smaller_part_size(112 << 20, 16 << 20, 0.030, 90e6) >> 20  # S3: 30 ms, 90 MB/s per connection
    8
    >>> smaller_part_size(112 << 20, 16 << 20, 0.030, 500e6) is None  # loopback, a busy CPU's slow heads
    True
    """
    half = part_size // 2
    if rate >= SLOW_CONNECTION or half < max(MIN_PART_SIZE, latency_s * rate):
        return None
    now = _delivers(most_in_flight(memory_budget, part_size), part_size, latency_s, rate)
    then = _delivers(most_in_flight(memory_budget, half), half, latency_s, rate)
    return half if then >= WORTH_IT * now else None


def is_better(seconds_per_byte: float, before: float) -> bool:
    """Whether a stream read at ``seconds_per_byte`` (waits included) did better than one read at ``before``:
    by :data:`BETTER` at least (one stream's timing is noisy; in doubt, the larger parts).

    >>> is_better(1.5e-9, 2e-9), is_better(1.9e-9, 2e-9)
    (True, False)
    """
    return seconds_per_byte <= BETTER * before


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



@dataclasses.dataclass(frozen=True)
class Evidence:
    """What streams of one part size saw, added up: how long they were read (from the first part in steady
    state) and how many bytes, how long reads waited for parts, and the parts' time to first byte and
    seconds per byte after it (summed over ``latencies`` and ``timings``)."""

    read_seconds: float = 0.0
    read_bytes: int = 0
    wait_seconds: float = 0.0
    latencies: int = 0
    latency_sum: float = 0.0
    timings: int = 0
    seconds_per_byte_sum: float = 0.0

    def plus(self, other: "Evidence") -> "Evidence":
        return Evidence(*(mine + theirs for mine, theirs in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def enough(self) -> bool:
        """Enough to decide on: :data:`EVIDENCE_SECONDS` of reading, a few parts timed."""
        return self.read_seconds >= EVIDENCE_SECONDS and self.timings >= _EVIDENCE_PARTS and self.read_bytes > 0

    @property
    def held_back(self) -> bool:
        """Reads waited :data:`HELD_BACK` of the reading time or more: the link set the pace, not the reader."""
        return self.wait_seconds >= HELD_BACK * self.read_seconds

    @property
    def seconds_per_byte(self) -> float:
        """How fast the streams were read, waits included."""
        return self.read_seconds / max(self.read_bytes, 1)

    @property
    def latency_s(self) -> float:
        return self.latency_sum / max(self.latencies, 1)

    @property
    def rate(self) -> float:
        """Bytes per second one connection received after the first byte."""
        return self.timings / self.seconds_per_byte_sum if self.seconds_per_byte_sum else float("inf")
