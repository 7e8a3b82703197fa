"""Request accounting: exact request, retry and byte counts per backend against the local S3 server, and
the cost arithmetic at S3 Standard prices."""
import multiprocessing
import pickle
import threading

import boto3
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3)
from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.stats import RequestStats, process_stats
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.testing import FaultPlan, S3Proxy


@pytest.fixture
def put_object(s3_bucket):
    client = boto3.client("s3")

    def put(size: int, key: str = "object.bin") -> str:
        client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(index % 251 for index in range(size)))
        return f"s3://{s3_bucket}/{key}"

    return put


def counted_read(url, backend, config=None, **options):
    """The requests, retries and bytes that reading ``url`` whole on ``backend`` added to this process's counts."""
    before = process_stats().snapshot()
    stream = get_opener(backend)(url, config or S3Config().resolved(), **options)
    try:
        data = stream.read()
    finally:
        stream.close()
    return process_stats() - before, data


def test_cost_bills_get_and_head_at_get_price_and_list_and_put_at_list_price():
    assert RequestStats(gets=1000).cost_usd() == pytest.approx(0.0004)
    assert RequestStats(heads=1000).cost_usd() == pytest.approx(0.0004)
    assert RequestStats(lists=1000).cost_usd() == pytest.approx(0.005)
    assert RequestStats(puts=1000).cost_usd() == pytest.approx(0.005)
    assert RequestStats(gets=2_500_000, lists=200, retries=7, bytes_received=10**12).cost_usd() == pytest.approx(1.001)


def test_stats_add_subtract_and_serialise_as_a_dict():
    total = RequestStats(gets=3, heads=1, bytes_received=100) + RequestStats(gets=2, lists=1, retries=4)
    assert total.as_dict() == {"gets": 5, "heads": 1, "lists": 1, "puts": 0, "retries": 4, "bytes_received": 100,
                               "cache_hits": 0, "cache_misses": 0, "bytes_from_cache": 0}
    assert total.requests == 7
    assert (total - RequestStats(gets=5)).gets == 0
    assert pickle.loads(pickle.dumps(total)) == total


def test_stats_reject_an_unknown_counter_by_name():
    with pytest.raises(TypeError, match=r"unknown counters \['posts'\]"):
        RequestStats().add(posts=1)


def test_stats_count_exactly_under_concurrent_updates():
    stats = RequestStats()

    def hammer() -> None:
        for _ in range(5000):
            stats.add(gets=1, bytes_received=3)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.gets == 40_000 and stats.bytes_received == 120_000


@pytest.mark.parametrize("size, part_size, gets", [(10_500, 1000, 11), (1000, 1000, 1), (1001, 1000, 2), (1, 4096, 1), (0, 1000, 1)])
def test_boto3_sends_one_ranged_get_per_part_and_counts_the_object_bytes(size, part_size, gets, put_object):
    stats, data = counted_read(put_object(size), "boto3", part_size=part_size, concurrency=3)
    assert len(data) == size
    assert stats == RequestStats(gets=gets, bytes_received=size)


def test_fsspec_sends_one_head_then_one_get_per_part(put_object):
    stats, _ = counted_read(put_object(10_500), "fsspec", part_size=1000, concurrency=3)
    assert stats == RequestStats(gets=11, heads=1, bytes_received=10_500)


@pytest.mark.parametrize("backend, heads", [("awscli", 1), ("s3torchconnector", 1), ("s3fileloader", 1)])
def test_backends_we_launch_count_one_get_per_object_and_the_heads_we_make(backend, heads, put_object):
    stats, _ = counted_read(put_object(10_500), backend)
    assert stats == RequestStats(gets=1, heads=heads, bytes_received=10_500)


def test_slow_downs_count_as_retries_and_each_attempt_as_a_request(s3_server, put_object):
    url = put_object(10_500)
    with S3Proxy(s3_server.endpoint_url, FaultPlan(slow_down_every=2, max_faults=5)) as proxy:
        config = S3Config(endpoint_url=proxy.endpoint_url, max_attempts=8).resolved()
        stats, data = counted_read(url, "boto3", config, part_size=1000, concurrency=3)
    assert len(data) == 10_500
    assert proxy.faults_injected == 5
    assert stats == RequestStats(gets=11 + 5, retries=5, bytes_received=10_500)
    assert stats.gets == proxy.object_gets


def _shard_sizes(urls):
    client = boto3.client("s3")
    return [client.head_object(Bucket=url.split("/")[2], Key=url.split("/", 3)[3])["ContentLength"] for url in urls]


def test_open_s3_stats_count_the_pipe_reads_once_also_through_a_copy(wds_shards):
    shards = wds_shards(num_shards=3, samples_per_shard=2)
    dp = IterableWrapper(shards.urls).open_s3(backend="boto3")
    before = dp.stats.snapshot()
    copy = pickle.loads(pickle.dumps(dp))
    for _, stream in copy:
        stream.read()
        stream.close()
    expected = RequestStats(gets=3, bytes_received=sum(_shard_sizes(shards.urls)))
    assert dp.stats - before == expected and copy.stats - before == expected


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_open_s3_stats_in_the_main_process_add_up_what_the_workers_did(wds_shards, start_method):
    from torch.utils.data import DataLoader

    shards = wds_shards(num_shards=4, samples_per_shard=2)
    dp = IterableWrapper(shards.urls).sharding_filter().open_s3(backend="boto3")
    before = dp.stats.snapshot()
    loader = DataLoader(dp.map(_read_and_close), batch_size=None, num_workers=2, multiprocessing_context=start_method)
    assert sorted(len(data) for data in loader) == sorted(_shard_sizes(shards.urls))
    assert dp.stats - before == RequestStats(gets=4, bytes_received=sum(_shard_sizes(shards.urls)))


def _read_and_close(pair):
    data = pair[1].read()
    pair[1].close()
    return data


def _child_counts(queue) -> None:
    queue.put(process_stats().as_dict())


def test_a_forked_worker_starts_counting_from_zero():
    process_stats().add(gets=1)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_counts, args=(queue,))
    child.start()
    counts = queue.get(timeout=30)
    child.join(timeout=30)
    assert counts == RequestStats().as_dict()
