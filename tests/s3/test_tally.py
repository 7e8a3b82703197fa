"""A SharedTally adds up the counts of every process that holds it, under fork and spawn, and cleans up."""
import gc
import multiprocessing
import os
import pickle

import pytest

from torchdata_s3ext.tally import ROWS, SharedTally


def _add_in_child(tally: SharedTally, times: int) -> None:
    for _ in range(times):
        tally.add({"gets": 1, "bytes_received": 10})


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_children_counts_reach_the_parent_under_both_start_methods(start_method):
    tally = SharedTally(("gets", "bytes_received"))
    tally.add({"gets": 1})
    context = multiprocessing.get_context(start_method)
    children = [context.Process(target=_add_in_child, args=(tally, 5)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert tally.totals() == {"gets": 16, "bytes_received": 150}


def test_rows_of_ended_processes_are_taken_over_and_their_counts_kept():
    tally = SharedTally(("gets",))
    context = multiprocessing.get_context("fork")
    for _ in range(ROWS + 5):  # more processes over time than there are rows
        child = context.Process(target=_add_in_child, args=(tally, 1))
        child.start()
        child.join(timeout=60)
    assert tally.totals() == {"gets": ROWS + 5}


def test_a_pickled_copy_adds_to_the_same_totals_and_only_the_owner_removes_the_file():
    tally = SharedTally(("gets",))
    copy = pickle.loads(pickle.dumps(tally))
    copy.add({"gets": 2})
    tally.add({"gets": 1})
    assert tally.totals() == copy.totals() == {"gets": 3}
    path = tally.path
    del copy
    gc.collect()
    assert os.path.exists(path)
    del tally
    gc.collect()
    assert not os.path.exists(path)


def test_a_copy_whose_file_is_gone_counts_nothing_and_does_not_fail():
    tally = SharedTally(("gets",))
    state = pickle.dumps(tally)
    del tally
    gc.collect()
    orphan = pickle.loads(state)
    orphan.add({"gets": 1})
    assert orphan.totals() == {"gets": 0}
