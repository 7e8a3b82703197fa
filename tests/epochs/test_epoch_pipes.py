"""Each epochs pipe on its own: it pickles (as DataLoader workers receive it) and gives the same epoch after the
round trip, a restart after half an epoch delivers everything again, and a reader takes its share."""
import pickle
from typing import Callable, List

import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext.epochs import readers

SHARD_URLS = [f"s3://bucket/shard-{index:06d}.tar" for index in range(20)]


def shuffled_shards():
    return IterableWrapper(SHARD_URLS).shuffle_shards(seed=3)


def second_of_three_readers():
    return IterableWrapper(SHARD_URLS).shard_across_readers(rank=1, world_size=3)


def shuffled_samples():
    return IterableWrapper(range(40)).shuffle_samples(buffer_size=5, seed=3)


PIPES: List[Callable[[], object]] = [shuffled_shards, second_of_three_readers, shuffled_samples]
EXPECTED = {
    "shuffled_shards": sorted(SHARD_URLS),
    "second_of_three_readers": SHARD_URLS[1::3],
    "shuffled_samples": list(range(40)),
}


@pytest.mark.parametrize("make_pipe", PIPES, ids=lambda make_pipe: make_pipe.__name__)
def test_epochs_pipe_gives_the_same_epoch_after_a_pickle_round_trip(make_pipe):
    pipe = make_pipe()
    restored = pickle.loads(pickle.dumps(pipe))
    assert list(restored) == list(pipe)
    assert sorted(restored) == EXPECTED[make_pipe.__name__]


@pytest.mark.parametrize("make_pipe", PIPES, ids=lambda make_pipe: make_pipe.__name__)
def test_epochs_pipe_restarted_after_half_an_epoch_delivers_everything(make_pipe):
    pipe = make_pipe()
    expected = EXPECTED[make_pipe.__name__]
    iterator = iter(pipe)
    [next(iterator) for _ in range(len(expected) // 2)]
    assert sorted(pipe) == expected


def test_a_reader_of_a_process_group_is_worker_times_world_size_plus_rank(monkeypatch):
    monkeypatch.setattr(readers.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(readers.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(readers.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(readers, "get_worker_info", lambda: type("Info", (), {"id": 1, "num_workers": 3})())
    assert readers.current_reader() == (3, 6)
    assert readers.current_reader((0, 4)) == (4, 12)  # ranks given to the pipe win
    try:
        readers.split_over_ranks(False)  # every rank reads every shard: its workers split them
        assert readers.current_reader() == (1, 3)
    finally:
        readers.split_over_ranks(True)


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, None), (None, 3)])
def test_rank_and_world_size_go_together_and_in_range(rank, world_size):
    with pytest.raises(ValueError, match="rank and world_size go together"):
        IterableWrapper(SHARD_URLS).shard_across_readers(rank=rank, world_size=world_size)
