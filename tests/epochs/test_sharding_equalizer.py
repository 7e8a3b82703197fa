"""``RankEqualizer``'s agreement protocol on simulated ranks (threads, an in-memory all-reduce): equal counts,
nothing lost but what is reported, and every rank taking the same decision, for any uneven counts."""
import threading
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdata_s3ext.epochs.equalizer import RankEqualizer


def run_ranks(counts: List[int], mode: str, window: int) -> List[Tuple[Optional[List[int]], Optional[Exception], "RankEqualizer"]]:
    """Each simulated rank r equalizes the samples ``r * 1000 + i``; returns (yielded, error, equalizer) per rank."""
    barrier = threading.Barrier(len(counts), timeout=10)
    contributions: List[Tuple[int, int, bool]] = [(0, 0, True)] * len(counts)

    class SimulatedRank(RankEqualizer):
        def __init__(self, rank: int) -> None:
            super().__init__([rank * 1000 + index for index in range(counts[rank])], mode, window=window)
            self.rank = rank

        def _agree(self, have: int, can_repeat: bool) -> Tuple[int, int, bool]:
            contributions[self.rank] = (have, have, can_repeat)
            barrier.wait()
            agreed = (min(c[0] for c in contributions), max(c[1] for c in contributions), all(c[2] for c in contributions))
            barrier.wait()
            return agreed

    equalizers = [SimulatedRank(rank) for rank in range(len(counts))]
    outcomes: List[Tuple[Optional[List[int]], Optional[Exception], RankEqualizer]] = [(None, None, e) for e in equalizers]

    def run(rank: int) -> None:
        try:
            outcomes[rank] = (list(equalizers[rank]), None, equalizers[rank])
        except RuntimeError as error:
            outcomes[rank] = (None, error, equalizers[rank])

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a simulated rank hung"
    return outcomes


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=4), window=st.integers(1, 8))
def test_equalize_drop_yields_the_smallest_count_everywhere_and_reports_the_rest(counts, window):
    for rank, (yielded, error, equalizer) in enumerate(run_ranks(counts, "drop", window)):
        assert error is None
        assert yielded == [rank * 1000 + index for index in range(min(counts))]
        assert equalizer.samples_dropped == counts[rank] - min(counts)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=4), window=st.integers(1, 8))
def test_equalize_pad_yields_the_largest_count_everywhere_or_fails_everywhere(counts, window):
    outcomes = run_ranks(counts, "pad", window)
    if min(counts) == 0 and max(counts) > 0:
        assert all(error is not None for _, error, _ in outcomes), "ranks disagreed on failing"
        return
    for rank, (yielded, error, equalizer) in enumerate(outcomes):
        assert error is None and yielded is not None
        own = [rank * 1000 + index for index in range(counts[rank])]
        assert len(yielded) == max(counts)
        assert yielded[: counts[rank]] == own and set(yielded) <= set(own)
        assert equalizer.samples_repeated == max(counts) - counts[rank]


def test_rank_equalizer_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match=r"equalize must be one of \('drop', 'pad'\) or None, got 'even'"):
        RankEqualizer([], "even")
