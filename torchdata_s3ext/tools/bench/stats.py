"""The article's statistics: time every ``window`` iterations, then mean and variance of those window times
with the first window left out (it carries start-up: workers forking, first connections, first shards)."""
import dataclasses
import statistics
import time
from typing import List, Optional, Sequence

__all__ = ["WindowClock", "WindowStats", "window_durations", "window_stats", "stall_fraction"]


def window_durations(start: float, stamps: Sequence[float], window: int) -> List[float]:
    """Seconds taken by each complete run of ``window`` iterations, given the time at the end of each one.

    ``stamps[i]`` is the clock after iteration ``i + 1``; a trailing incomplete window is dropped.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    ends = [start] + [stamps[index] for index in range(window - 1, len(stamps), window)]
    return [later - earlier for earlier, later in zip(ends, ends[1:])]


@dataclasses.dataclass(frozen=True)
class WindowStats:
    """Window times (seconds per ``window`` iterations) and what the article reports about them."""

    window: int
    durations: List[float]
    mean: Optional[float]
    variance: Optional[float]

    @property
    def iterations_per_second(self) -> Optional[float]:
        return self.window / self.mean if self.mean else None


def window_stats(durations: Sequence[float], window: int, skip_first: int = 1) -> WindowStats:
    """Mean and sample variance of ``durations[skip_first:]``; ``None`` where too few windows remain.

    The article's ``mean(stats_lst[1:])`` and ``variance(stats_lst[1:])``: the mean needs one window after
    the skipped ones, the variance two.
    """
    kept = list(durations[skip_first:])
    mean = statistics.mean(kept) if kept else None
    variance = statistics.variance(kept) if len(kept) >= 2 else None
    return WindowStats(window=window, durations=list(durations), mean=mean, variance=variance)


class WindowClock:
    """Timestamps each iteration; ``stats()`` turns them into :class:`WindowStats`."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self.start = time.perf_counter()
        self.stamps: List[float] = []

    def tick(self) -> None:
        self.stamps.append(time.perf_counter())

    @property
    def elapsed(self) -> float:
        return (self.stamps[-1] if self.stamps else time.perf_counter()) - self.start

    def stats(self) -> WindowStats:
        return window_stats(window_durations(self.start, self.stamps, self.window), self.window)


def stall_fraction(cached_step: Optional[float], streamed_step: Optional[float]) -> Optional[float]:
    """Share of a streamed step spent waiting for data: ``1 - cached / streamed``, clipped to [0, 1].

    ``cached`` is the step time on one batch held in memory, ``streamed`` the step time when each batch
    comes from the loader; the difference is time the step waited for data.
    """
    if cached_step is None or not streamed_step:
        return None
    return min(1.0, max(0.0, 1.0 - cached_step / streamed_step))
