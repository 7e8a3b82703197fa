"""The main process reads the totals of what its DataLoader workers did: requests (``stats``) and bad data
(``error_counts``), under fork and spawn, through ``wds_pipe`` and a hand-written chain."""
import pytest
from torch.utils.data import DataLoader

from torchdata_s3ext import wds_pipe
from torchdata_s3ext.testing import seed_samples, tar_bytes


@pytest.fixture
def shards_with_one_damaged(wds_shards, s3_server, s3_bucket):
    import boto3

    shards = wds_shards(num_shards=3, samples_per_shard=2, prefix="counted/")
    damaged = tar_bytes(list(seed_samples(2, seed=9)))[:700]  # cut inside its first member
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(
        Bucket=s3_bucket, Key="counted/shard-000003.tar", Body=damaged)
    return shards, f"s3://{s3_bucket}/counted/"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_wds_pipe_counts_of_its_workers_reach_the_main_process(shards_with_one_damaged, start_method):
    shards, prefix = shards_with_one_damaged
    pipe = wds_pipe(prefix, on_error="skip", decode=False, shuffle=False)
    before = pipe.stats.snapshot()
    loader = DataLoader(pipe, batch_size=None, num_workers=2, multiprocessing_context=start_method)
    assert sorted(sample["__key__"] for sample in loader) == sorted(shards.keys)
    assert pipe.error_counts.bad_shards == 1 and pipe.error_counts.total() == 1
    requests = pipe.stats - before
    assert requests.gets >= 4 and requests.bytes_received > 0


def test_wds_pipe_stats_include_its_listing(shards_with_one_damaged):
    _, prefix = shards_with_one_damaged
    pipe = wds_pipe(prefix, on_error="skip", decode=False)
    assert pipe.stats.lists == 1 and pipe.stats.gets == 0


def test_counts_over_ranks_without_a_process_group_are_this_process_s():
    pipe_counts = wds_pipe(["s3://bkt/a.tar"], decode=False).error_counts
    assert pipe_counts.over_ranks() == pipe_counts.as_dict()


def _rank_counts(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from torchdata_s3ext.samples.policy import ErrorCounts
    from torchdata_s3ext.s3.stats import RequestStats

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        counts = ErrorCounts(bad_shards=rank + 1)
        results.put((rank, counts.over_ranks(), RequestStats(gets=10 * (rank + 1)).over_ranks().gets))
    finally:
        dist.destroy_process_group()


def test_counts_over_ranks_add_up_every_rank():
    import multiprocessing
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ranks = [context.Process(target=_rank_counts, args=(rank, port, results)) for rank in range(2)]
    for process in ranks:
        process.start()
    gathered = sorted(results.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    for _, error_totals, gets in gathered:
        assert error_totals["bad_shards"] == 3 and gets == 30
