"""How the shufflers count epochs and pick their seeds: the counting rule of ``seeding.py`` on simulated loader
calls, and the pattern of torch's ``DataLoader`` calls it relies on, pinned so that a torch upgrade that
changes it fails here by name."""
import os
import pickle
from typing import List, Tuple

import pytest
from torch.utils.data import DataLoader
from torch.utils.data.datapipes.datapipe import IterDataPipe
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers shuffle_shards, shuffle_samples)
from torchdata_s3ext.epochs import seeding

SHARD_URLS = [f"shard-{index:02d}.tar" for index in range(30)]
#: what ``os.getpid()`` says in a simulated DataLoader worker
WORKER_PID = os.getpid() + 1


def shard_orders_without_loader(seed: int, epochs: int) -> List[List[str]]:
    shuffler = IterableWrapper(SHARD_URLS).shuffle_shards(seed=seed)
    return [list(shuffler) for _ in range(epochs)]


def test_pipe_seed_makes_the_loader_seed_irrelevant():
    orders = []
    for loader_seeds in ([11, 12], [98765, 4]):
        shuffler = IterableWrapper(SHARD_URLS).shuffle_shards(seed=0)
        epochs = []
        for loader_seed in loader_seeds:
            shuffler.set_seed(loader_seed)
            epochs.append(list(shuffler))
        orders.append(epochs)
    assert orders[0] == orders[1] == shard_orders_without_loader(0, 2)
    assert orders[0][0] != orders[0][1]


def test_without_pipe_seed_the_loader_seed_decides():
    def order(loader_seed: int) -> List[str]:
        return list(IterableWrapper(SHARD_URLS).shuffle_shards().set_seed(loader_seed))

    assert order(5) == order(5) != order(6)


def test_without_any_seed_every_epoch_is_random():
    shuffler = IterableWrapper(SHARD_URLS).shuffle_shards()
    assert len({tuple(shuffler) for _ in range(3)}) == 3


def test_main_copy_seeded_twice_per_worker_iterator_counts_one_epoch_in_the_worker(monkeypatch):
    # As torch's multi-worker DataLoader does: the main process's pipe is seeded (seed A), copied to a worker,
    # seeded again (B, seen by no worker); the worker re-applies A to its copy, then iterates.
    main_pipe = IterableWrapper(SHARD_URLS).shuffle_shards(seed=3)
    expected = shard_orders_without_loader(3, 3)
    worker_epochs = []
    for epoch_seeds in [(101, 102), (201, 202), (301, 302)]:
        main_pipe.set_seed(epoch_seeds[0])
        worker_copy = pickle.loads(pickle.dumps(main_pipe))
        main_pipe.set_seed(epoch_seeds[1])
        with monkeypatch.context() as patch:
            patch.setattr(seeding.os, "getpid", lambda: WORKER_PID)
            worker_copy.set_seed(epoch_seeds[0])
            worker_epochs.append(list(worker_copy))
    assert worker_epochs == expected


def test_persistent_worker_counts_each_later_seeding_as_an_epoch(monkeypatch):
    main_pipe = IterableWrapper(SHARD_URLS).shuffle_shards(seed=3)
    main_pipe.set_seed(101)
    worker_copy = pickle.loads(pickle.dumps(main_pipe))
    monkeypatch.setattr(seeding.os, "getpid", lambda: WORKER_PID)
    epochs = []
    for loader_seed in (101, 202, 303):  # the re-applied copy seed, then one _ResumeIteration per epoch
        worker_copy.set_seed(loader_seed)
        epochs.append(list(worker_copy))
    assert epochs == shard_orders_without_loader(3, 3)


def test_an_epoch_without_shuffling_still_counts():
    shuffler = IterableWrapper(range(50)).shuffle_samples(buffer_size=10, seed=1)
    first = list(shuffler)
    shuffler.set_shuffle(False)
    assert list(shuffler) == list(range(50))
    shuffler.set_shuffle(True)
    third = list(shuffler)
    reference = IterableWrapper(range(50)).shuffle_samples(buffer_size=10, seed=1)
    assert [first, third] == [list(reference) for _ in range(3)][0::2]


class _SeedingRecorder(IterDataPipe):
    """Records each ``set_seed`` as (in the main process?, seed), and yields what its copy had recorded."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid
        self.calls: List[Tuple[bool, int]] = []

    def set_seed(self, seed: int) -> "_SeedingRecorder":
        self.calls.append((os.getpid() == self.main_pid, seed))
        return self

    def __iter__(self):
        yield list(self.calls)


def _seedings_seen_by_the_worker(loader: DataLoader) -> List[List[Tuple[bool, int]]]:
    # The loader's default conversion turns the recorded tuples into lists.
    return [[tuple(call) for call in calls] for calls in loader]


@pytest.mark.parametrize("persistent_workers", [False, True])
def test_torch_dataloader_seeds_the_main_copy_as_seeding_py_expects(persistent_workers):
    recorder = _SeedingRecorder(os.getpid())
    loader = DataLoader(
        recorder, batch_size=None, num_workers=1, multiprocessing_context="fork", persistent_workers=persistent_workers,
        timeout=60,
    )
    [first_copy_calls] = _seedings_seen_by_the_worker(loader)
    main_first, main_reset = recorder.calls
    assert first_copy_calls == [main_first, (False, main_first[1])], "the worker's copy: seeded once, re-applied once"
    assert main_reset[0] and main_reset[1] != main_first[1]
    [second_copy_calls] = _seedings_seen_by_the_worker(loader)
    if persistent_workers:
        assert len(recorder.calls) == 3 and second_copy_calls[-1] == (False, recorder.calls[2][1])
    else:
        assert second_copy_calls == recorder.calls[:3] + [(False, recorder.calls[2][1])]
        assert len(recorder.calls) == 4
