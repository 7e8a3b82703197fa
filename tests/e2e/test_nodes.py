"""``wds_node`` under ``torchdata.nodes.Loader`` (torchdata 0.10 and later): the same samples as ``wds_pipe``,
every sample once per epoch, exact resume from ``Loader.state_dict()`` at any step, twice in a row, with and
without decoding threads, and exactly once over ranks given to the pipe."""
import os
import pickle
from typing import List

import pytest

from torchdata_s3ext import wds_node, wds_pipe
from torchdata_s3ext.testing import seed_samples, write_tar

pytestmark = pytest.mark.nodes

SIZES = [6, 3, 0, 7, 5]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("node-shards")
    first = 0
    for shard, count in enumerate(SIZES):
        with open(os.path.join(folder, f"shard-{shard:06d}.tar"), "wb") as tar:
            write_tar(tar, seed_samples(count, image_size=8, first_index=first))
        first += count
    return str(folder)


def _loader(shards: str, **options):
    from torchdata.nodes import Loader

    return Loader(wds_node(shards, backend="local", shuffle_buffer=4, seed=0, **options))


def _keys(samples) -> List[str]:
    return [sample["__key__"] for sample in samples]


@pytest.mark.parametrize("decode_workers", [0, 2])
def test_wds_node_gives_wds_pipe_s_samples_in_wds_pipe_s_orders(shards, decode_workers):
    pipe = wds_pipe(shards, backend="local", shuffle_buffer=4, seed=0)
    expected = [_keys(pipe) for _ in range(2)]
    loader = _loader(shards, decode_workers=decode_workers)
    epochs = []
    for _ in range(2):
        samples = list(loader)
        assert all(sample["image"].shape == (3, 8, 8) for sample in samples)
        epochs.append(_keys(samples))
    assert epochs == expected
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(set(epochs[0])) == sum(SIZES) and epochs[0] != epochs[1]


@pytest.mark.parametrize("decode_workers", [0, 2])
@pytest.mark.parametrize("steps", [(0, 5), (7, 3), (sum(SIZES) - 1, 0), (sum(SIZES), 1)])
def test_wds_node_resumes_exactly_twice_in_a_row(shards, decode_workers, steps):
    reference = _loader(shards, decode_workers=decode_workers)
    uninterrupted = [key for _ in range(3) for key in _keys(reference)]  # three epochs, one after the other
    delivered: List[str] = []
    state = None
    for leg, count in enumerate(steps):
        loader = _loader(shards, decode_workers=decode_workers)
        if state is not None:
            loader.load_state_dict(pickle.loads(pickle.dumps(state)))
        iterator = iter(loader)
        for _ in range(count):
            sample = next(iterator, None)
            if sample is None:
                break
            delivered.append(sample["__key__"])
        state = loader.state_dict()
    loader = _loader(shards, decode_workers=decode_workers)
    loader.load_state_dict(state)
    rest = _keys(loader)  # of the epoch under way (or the next one, after a checkpoint at an epoch's end)
    following = _keys(loader)
    delivered += rest + following
    assert delivered == uninterrupted[:len(delivered)] and len(delivered) >= 2 * sum(SIZES)


def test_wds_node_ranks_given_share_every_sample_once(shards):
    for epoch in range(2):
        keys = []
        for rank in range(3):
            loader = _loader(shards, rank=rank, world_size=3)
            epochs = [_keys(loader) for _ in range(epoch + 1)]
            keys += epochs[-1]
        assert sorted(keys) == sorted(set(keys)) and len(keys) == sum(SIZES)


def test_decode_workers_must_be_a_count(shards):
    with pytest.raises(ValueError, match="decode_workers must be an int >= 0"):
        wds_node(shards, backend="local", decode_workers=-1)


def _mixed(shards: str, kind: str):
    files = sorted(os.path.join(shards, name) for name in os.listdir(shards))
    if kind == "mix":
        return {"a": files[:3], "b": files[3:]}, {"weights": {"a": 1, "b": 2}, "stop": "cycle_until_all_exhausted"}
    return files, {"samples_per_epoch": 8}


@pytest.mark.parametrize("kind", ["mix", "window"])
@pytest.mark.parametrize("decode_workers", [0, 2])
@pytest.mark.parametrize("steps", [(5, 3), (8, 0)])
def test_wds_node_over_a_mix_or_fixed_epochs_resumes_exactly_twice_in_a_row(shards, kind, decode_workers, steps):
    spec, options = _mixed(shards, kind)
    reference = _loader(spec, decode_workers=decode_workers, **options)
    epochs = [_keys(reference) for _ in range(3)]
    delivered: List[str] = []
    state = None
    for count in steps:
        loader = _loader(spec, decode_workers=decode_workers, **options)
        if state is not None:
            loader.load_state_dict(pickle.loads(pickle.dumps(state)))
        iterator = iter(loader)
        delivered += [next(iterator)["__key__"] for _ in range(count)]
        state = loader.state_dict()
    loader = _loader(spec, decode_workers=decode_workers, **options)
    loader.load_state_dict(state)
    delivered += _keys(loader) + _keys(loader)
    uninterrupted = [key for epoch in epochs for key in epoch]
    assert delivered == uninterrupted[:len(delivered)] and len(delivered) >= len(epochs[0]) + len(epochs[1])
