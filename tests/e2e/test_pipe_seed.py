"""``seed=`` alone reproduces an order: epoch k's order depends only on the seed, k and the reader, under a plain
``DataLoader`` with or without ``generator=`` (0 and 2 workers, fork and spawn, persistent or not), under
``DataLoader2`` (torchdata 0.9) and without a loader; ``seed=None`` draws a seed per pipe."""
from typing import Any, List, Optional

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext import reading_service, wds_pipe
from torchdata_s3ext.faces.dataloader2 import has_torchdata_datapipes

SHARD_SIZES = [3, 1, 0, 2, 4, 5]
SHARD_URLS = [f"s3://bucket/shard-{index:06d}.tar" for index in range(12)]


@pytest.fixture
def shards(wds_shards):
    return wds_shards(samples_per_shard_list=SHARD_SIZES, image_size=8)


def keys_per_epoch(
    pipe: Any, num_workers: int, context: Optional[str] = None, generator: Optional[torch.Generator] = None,
    **loader_kwargs,
) -> List[List[str]]:
    loader = DataLoader(
        pipe, batch_size=None, num_workers=num_workers, multiprocessing_context=context if num_workers else None,
        generator=generator, timeout=60 if num_workers else 0, **loader_kwargs,
    )
    return [[sample["__key__"] for sample in loader] for _ in range(2)]


# spawn with persistent workers: a worker start costs seconds there (non-persistent spawn copies are counted
# in test_epoch_k_has_the_same_shard_order_under_every_loader).
@pytest.mark.parametrize("num_workers, context, persistent", [(0, None, False), (2, "fork", False), (2, "spawn", True)])
def test_seed_alone_gives_the_same_orders_in_two_separate_loaders(shards, num_workers, context, persistent):
    def run(seed: int) -> List[List[str]]:
        pipe = wds_pipe(shards.urls, shuffle_buffer=4, seed=seed)
        return keys_per_epoch(pipe, num_workers, context, persistent_workers=persistent)

    first = run(0)
    for epoch in first:
        assert sorted(epoch) == sorted(shards.keys), "a sample is missing or repeated"
    assert first[0] != first[1], "the second epoch repeated the first one's order"
    assert run(0) == first
    assert run(1) != first


def test_the_loader_generator_does_not_change_a_seeded_pipe_s_orders(shards):
    def run(loader_seed: int) -> List[List[str]]:
        return keys_per_epoch(wds_pipe(shards.urls, shuffle_buffer=4, seed=0), 2, "fork", torch.Generator().manual_seed(loader_seed))

    assert run(5) == run(6) == keys_per_epoch(wds_pipe(shards.urls, shuffle_buffer=4, seed=0), 2, "fork")


def test_seed_none_draws_a_seed_per_pipe_and_delivers_every_sample(shards):
    first = keys_per_epoch(wds_pipe(shards.urls, shuffle_buffer=4), 2, "fork")
    assert first != keys_per_epoch(wds_pipe(shards.urls, shuffle_buffer=4), 2, "fork")
    assert all(sorted(epoch) == sorted(shards.keys) for epoch in first)


@pytest.mark.dataloader2
def test_seed_gives_the_same_orders_under_dataloader2_as_under_dataloader(shards):
    from torchdata.dataloader2 import DataLoader2

    expected = keys_per_epoch(wds_pipe(shards.urls, shuffle_buffer=4, seed=0), 2, "fork")
    service = reading_service(2, multiprocessing_context="fork", timeout=60)
    with DataLoader2(wds_pipe(shards.urls, shuffle_buffer=4, seed=0), reading_service=service) as loader:
        loader.seed(123)  # the pipe's seed decides
        assert [[sample["__key__"] for sample in loader] for _ in range(2)] == expected


def shard_order_pipe() -> Any:
    return IterableWrapper(SHARD_URLS).shuffle_shards(seed=0).shard_across_readers()


def three_epochs(loader) -> List[List[str]]:
    return [list(loader) for _ in range(3)]


def test_epoch_k_has_the_same_shard_order_under_every_loader():
    # Workers take shards round-robin and the DataLoader interleaves them round-robin: the permutation itself.
    unsharded = shard_order_pipe()
    expected = three_epochs(unsharded)
    assert len({tuple(epoch) for epoch in expected}) == 3
    loaders = {
        "0 workers": DataLoader(shard_order_pipe(), batch_size=None),
        "2 workers, fork": DataLoader(shard_order_pipe(), batch_size=None, num_workers=2, multiprocessing_context="fork"),
        "2 workers, spawn": DataLoader(shard_order_pipe(), batch_size=None, num_workers=2, multiprocessing_context="spawn"),
        "2 persistent workers, fork": DataLoader(
            shard_order_pipe(), batch_size=None, num_workers=2, multiprocessing_context="fork", persistent_workers=True
        ),
    }
    for name, loader in loaders.items():
        assert three_epochs(loader) == expected, name
    if not has_torchdata_datapipes():
        return
    from torchdata.dataloader2 import DataLoader2, InProcessReadingService

    # torchdata 0.9's own services walk a graph of IterDataPipes: ours go in wrapped in one
    for service, pipe in [(reading_service(2, multiprocessing_context="fork"), shard_order_pipe()),
                          (InProcessReadingService(), IterableWrapper(shard_order_pipe(), deepcopy=False)),
                          (None, shard_order_pipe())]:
        with DataLoader2(pipe, reading_service=service) as loader:
            assert three_epochs(loader) == expected, type(service).__name__
