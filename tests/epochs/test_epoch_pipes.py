"""Each epochs pipe on its own: it pickles (as DataLoader workers receive it) and gives the same epoch after the
round trip, and a restart after half an epoch delivers everything again."""
import pickle
from typing import Callable, List

import pytest
from torch.utils.data.datapipes.datapipe import IterDataPipe
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext.epochs.readers import split_over_workers_only

SHARD_URLS = [f"s3://bucket/shard-{index:06d}.tar" for index in range(20)]


def shuffled_shards() -> IterDataPipe:
    return IterableWrapper(SHARD_URLS).shuffle_shards(seed=3)


def second_of_three_readers() -> IterDataPipe:
    share = IterableWrapper(SHARD_URLS).shard_across_readers()
    share.apply_sharding(3, 1)
    return share


def shuffled_samples() -> IterDataPipe:
    return IterableWrapper(range(40)).shuffle_samples(buffer_size=5, seed=3)


PIPES: List[Callable[[], IterDataPipe]] = [shuffled_shards, second_of_three_readers, shuffled_samples]
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


def test_split_over_workers_only_keeps_the_worker_part_of_the_reader_number():
    share = IterableWrapper(SHARD_URLS).shard_across_readers()
    split_over_workers_only(share, world_size=2)
    share.apply_sharding(4, 3)  # torch's DataLoader: worker 1 * world_size 2 + rank 1
    assert (share.instance_id, share.num_of_instances) == (1, 2)
    assert list(pickle.loads(pickle.dumps(share))) == SHARD_URLS[1::2]
