"""How a pipe counts its epochs and picks its seeds: each iteration is the next epoch; the DataLoader workers of
one iteration read one epoch; copies count on their own; a loaded state is taken up by one iteration only. The
one thing of torch's it relies on (the workers of one iteration share ``seed - id``) is pinned here."""
import pickle
from types import SimpleNamespace
from typing import List

import pytest
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers shuffle_shards)
from torchdata_s3ext.epochs import clock as clock_module
from torchdata_s3ext.epochs.clock import EpochClock, Resume

SHARD_URLS = [f"shard-{index:02d}.tar" for index in range(30)]


def as_worker(monkeypatch, worker_id: int, base_seed: int, num_workers: int = 2) -> None:
    info = SimpleNamespace(id=worker_id, num_workers=num_workers, seed=base_seed + worker_id)
    monkeypatch.setattr(clock_module, "get_worker_info", lambda: info)


def test_each_iteration_in_the_main_process_is_the_next_epoch():
    clock = EpochClock()
    assert [clock.begin()[0] for _ in range(3)] == [1, 2, 3]
    assert clock.next_epoch() == 4


def test_the_workers_of_one_iteration_share_its_epoch_and_the_next_iteration_is_the_next_epoch(monkeypatch):
    clock = EpochClock()
    epochs = []
    for base_seed in (1000, 2000):
        for worker_id in (0, 1):
            as_worker(monkeypatch, worker_id, base_seed)
            epochs.append(clock.begin()[0])
    assert epochs == [1, 1, 2, 2]


def test_a_persistent_worker_iterating_again_begins_the_next_epoch_which_its_fellow_joins(monkeypatch):
    clock = EpochClock()
    epochs = []
    for _ in range(2):
        for worker_id in (1, 0):  # the same base seed each time: the workers were started once
            as_worker(monkeypatch, worker_id, 77)
            epochs.append(clock.begin()[0])
    assert epochs == [1, 1, 2, 2]


def test_a_copy_in_the_same_process_counts_on_its_own_from_where_the_original_was():
    clock = EpochClock()
    clock.begin()
    copy = pickle.loads(pickle.dumps(clock))
    assert copy.path != clock.path
    assert [copy.begin()[0], copy.begin()[0], clock.begin()[0]] == [2, 3, 2]


def test_a_state_loaded_in_the_main_process_is_taken_up_by_the_next_iteration_only(monkeypatch):
    clock = EpochClock()
    clock.begin()
    resume = Resume(epoch=7, id=12345, local=False)
    outcomes = []
    for base_seed in (10, 20):
        for worker_id in (0, 1):
            as_worker(monkeypatch, worker_id, base_seed)
            outcomes.append(clock.begin(resume))
    assert outcomes == [(7, True), (7, True), (8, False), (8, False)]


def test_a_state_loaded_in_a_worker_is_its_own(monkeypatch):
    clock = EpochClock()
    outcomes = []
    for worker_id in (0, 1):
        as_worker(monkeypatch, worker_id, 5)
        outcomes.append(clock.begin(Resume(epoch=3, id=worker_id + 1, local=True)))
    assert outcomes == [(3, True), (3, True)]


def test_workers_states_of_different_epochs_are_refused(monkeypatch):
    clock = EpochClock()
    as_worker(monkeypatch, 0, 5)
    clock.begin(Resume(epoch=3, id=1, local=True))
    as_worker(monkeypatch, 1, 5)
    with pytest.raises(RuntimeError, match="not of one checkpoint"):
        clock.begin(Resume(epoch=4, id=2, local=True))


class _IterationSeeds(IterableDataset):
    def __iter__(self):
        worker = get_worker_info()
        yield worker.seed - worker.id


@pytest.mark.parametrize("persistent_workers", [False, True])
def test_torch_gives_the_workers_of_one_iteration_one_seed_minus_id_and_a_new_one_each_iteration(persistent_workers):
    loader = DataLoader(_IterationSeeds(), batch_size=None, num_workers=3, multiprocessing_context="fork",
                        persistent_workers=persistent_workers, timeout=60)
    first, second = [list(loader) for _ in range(2)]
    assert len(set(first)) == 1 and len(first) == 3
    assert len(set(second)) == 1 and (first[0] != second[0] or persistent_workers)


def shard_orders(pipe, epochs: int) -> List[List[str]]:
    return [list(pipe) for _ in range(epochs)]


def test_the_pipe_seed_alone_decides_and_every_epoch_has_its_own_order():
    orders = shard_orders(IterableWrapper(SHARD_URLS).shuffle_shards(seed=0), 3)
    assert orders == shard_orders(IterableWrapper(SHARD_URLS).shuffle_shards(seed=0), 3)
    assert len({tuple(order) for order in orders}) == 3
    assert orders != shard_orders(IterableWrapper(SHARD_URLS).shuffle_shards(seed=1), 3)


def test_without_a_seed_each_pipe_draws_its_own():
    assert shard_orders(IterableWrapper(SHARD_URLS).shuffle_shards(), 2) != shard_orders(
        IterableWrapper(SHARD_URLS).shuffle_shards(), 2)


def test_a_seed_that_is_not_an_int_is_refused():
    with pytest.raises(TypeError, match="seed must be an int or None"):
        IterableWrapper(SHARD_URLS).shuffle_shards(seed="0")
