"""Through a proxy that injects S3's faults, every backend we drive still delivers every byte exactly once."""
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401
from torchdata_s3ext import S3Config
from torchdata_s3ext.testing import FaultPlan

# s3fileloader is left out: its native client can stall for minutes on a cut or a 503 before it reports one.
RESUMING_BACKENDS = ["boto3", "fsspec", "awscli", "iopath", "s3torchconnector"]


def members(urls, backend, endpoint_url, max_attempts=6, **backend_kwargs):
    config = S3Config(endpoint_url=endpoint_url, max_attempts=max_attempts, read_timeout=5)
    dp = IterableWrapper(urls).open_s3(backend=backend, config=config, **backend_kwargs).load_from_tar()
    return [(name.rsplit("/", 1)[1], stream.read()) for name, stream in dp]


def expected(shards):
    return [(f"{key}.{field}", shards.samples[key][field]) for key in shards.keys for field in ("image", "label")]


@pytest.mark.parametrize("backend", RESUMING_BACKENDS)
def test_cut_connections_are_resumed_without_losing_or_repeating_a_byte(backend, wds_shards, proxy):
    shards = wds_shards(num_shards=3, samples_per_shard=4, image_size=48)
    faulty = proxy(FaultPlan(cut_every=2, cut_after_bytes=9000, max_faults=8))
    assert members(shards.urls, backend, faulty.endpoint_url) == expected(shards)
    assert faulty.faults_injected > 0


@pytest.mark.parametrize("backend", RESUMING_BACKENDS)
def test_slow_down_answers_are_retried(backend, wds_shards, proxy):
    shards = wds_shards(num_shards=3, samples_per_shard=2)
    faulty = proxy(FaultPlan(slow_down_every=2, max_faults=6))
    assert members(shards.urls, backend, faulty.endpoint_url) == expected(shards)
    assert faulty.faults_injected > 0


def test_small_parts_through_cuts_and_slow_downs_stay_byte_exact(wds_shards, proxy):
    shards = wds_shards(num_shards=2, samples_per_shard=4, image_size=48)
    faulty = proxy(FaultPlan(cut_every=3, cut_after_bytes=700, slow_down_every=5, max_faults=20))
    assert members(shards.urls, "boto3", faulty.endpoint_url, max_attempts=8, part_size=4096, concurrency=3) == expected(shards)


@pytest.mark.parametrize("backend", ["boto3", "fsspec", "awscli"])
def test_persistent_slow_down_fails_after_bounded_attempts_naming_url(backend, wds_shards, proxy):
    shards = wds_shards(num_shards=1)
    faulty = proxy(FaultPlan(slow_down_every=1))
    with pytest.raises(OSError, match=shards.urls[0]):
        members(shards.urls, backend, faulty.endpoint_url, max_attempts=2)
    assert faulty.object_gets <= 6


@pytest.mark.parametrize("backend", ["boto3", "fsspec"])
def test_a_stalled_body_times_out_and_is_resumed(backend, wds_shards, proxy):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=48)
    faulty = proxy(FaultPlan(stall_every=2, stall_seconds=4, max_faults=2))
    config = S3Config(endpoint_url=faulty.endpoint_url, max_attempts=4, read_timeout=1)
    dp = IterableWrapper(shards.urls).open_s3(backend=backend, config=config, part_size=16384).load_from_tar()
    assert [(name.rsplit("/", 1)[1], stream.read()) for name, stream in dp] == expected(shards)
    assert faulty.faults_injected == 2
