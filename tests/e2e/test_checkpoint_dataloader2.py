"""``DataLoader2`` with our reading service: ``state_dict()`` at any step, ``DataLoader2.from_state(state,
reading_service(N))`` goes on with the epoch in the uninterrupted order, every sample once, and the next epoch
as an uninterrupted run's; ``merge_states`` takes its state too; a service that equalizes refuses to checkpoint."""
import os

import pytest

DataLoader2 = pytest.importorskip("torchdata.dataloader2", reason="DataLoader2 needs torchdata 0.9").DataLoader2

from torchdata_s3ext import merge_states, reading_service, wds_pipe
from torchdata_s3ext.testing import write_tar

SIZES = [6, 3, 0, 7, 5]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dl2-shards")
    for shard, count in enumerate(SIZES):
        with open(os.path.join(folder, f"shard-{shard:06d}.tar"), "wb") as tar:
            write_tar(tar, [(f"s{shard}_{index:03d}", {"cls": b"%d" % index}) for index in range(count)])
    return str(folder)


def _pipe(shards):
    return wds_pipe(shards, backend="local", decode=False, shuffle_buffer=4, seed=0)


def _keys(loader):
    return [sample["__key__"] for sample in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader2_resumes_from_its_state_in_the_uninterrupted_order(shards, workers):
    uninterrupted = DataLoader2(_pipe(shards), reading_service=reading_service(workers))
    reference = [_keys(uninterrupted), _keys(uninterrupted)]
    uninterrupted.shutdown()
    assert sorted(reference[0]) == sorted(reference[1]) and len(set(reference[0])) == sum(SIZES)
    for steps in (0, 7, sum(SIZES) - 1):
        loader = DataLoader2(_pipe(shards), reading_service=reading_service(workers))
        samples = iter(loader)
        delivered = [next(samples)["__key__"] for _ in range(steps)]
        state = loader.state_dict()
        loader.shutdown()
        resumed = DataLoader2.from_state(state, reading_service(workers))
        delivered += _keys(resumed)
        following = _keys(resumed)
        resumed.shutdown()
        assert delivered == reference[0], steps
        assert following == reference[1], steps


def test_a_dataloader2_state_merges_for_another_number_of_workers(shards):
    loader = DataLoader2(_pipe(shards), reading_service=reading_service(2))
    samples = iter(loader)
    delivered = [next(samples)["__key__"] for _ in range(9)]
    state = loader.state_dict()
    loader.shutdown()
    pipe = _pipe(shards)
    pipe.load_state_dict(merge_states([state]))
    resumed = DataLoader2(pipe, reading_service=reading_service(1))
    delivered += _keys(resumed)
    resumed.shutdown()
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == sum(SIZES)


def test_an_equalizing_reading_service_refuses_to_checkpoint(shards):
    service = reading_service(0, equalize="drop")
    service.initialize(_pipe(shards))
    service._equalize_group = object()  # as in a process group of several ranks
    with pytest.raises(RuntimeError, match="equalize"):
        service.checkpoint()
