"""A silent endpoint (a request taken and never answered, or a body that stops) ends in an error naming the
URL or prefix, for every request kind (LIST, HEAD, GET) and every backend, bounded by ``read_timeout`` and
``max_attempts`` (``docs/failures.md`` has the bound of each; here generous timeouts make a hang fail)."""
import os

import pytest

from torchdata_s3ext import S3Config, list_shards
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.testing import FaultPlan

S3_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]
#: the backends that HEAD an object before reading it (boto3 only for an empty byte range, as here)
HEADING_BACKENDS = ["boto3", "fsspec", "s3fileloader", "awscli", "s3torchconnector"]
OBJECT_SIZE = 400_000
OPTIONS = {
    "boto3": {"part_size": 128 << 10, "concurrency": 2},
    "fsspec": {"part_size": 128 << 10, "concurrency": 2},
    "iopath": {"part_size": 128 << 10, "concurrency": 2},
    "s3torchconnector": {"part_size": 5 << 20, "buffer_size": 64 << 10},
}
#: long enough to outlast every attempt; the proxy ends them when it stops
SILENCES = {
    "black_hole": dict(black_hole_every=1, black_hole_seconds=120),
    "stall": dict(stall_every=1, stall_seconds=120, stall_after_bytes=100),
}


def config(endpoint_url: str) -> S3Config:
    return S3Config(endpoint_url=endpoint_url, read_timeout=1, connect_timeout=1, max_attempts=2)


def silent_proxy(proxy, silence: str, kind: str, backend: str = ""):
    return proxy(FaultPlan(fault_kinds=(kind,), **SILENCES[silence]), own_process=backend == "s3fileloader")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("silence", sorted(SILENCES))
def test_a_silent_listing_ends_in_a_timeout_error_naming_the_prefix(silence, put, proxy):
    for index in range(3):
        put(b"x", key=f"train/shard-{index:06d}.tar")
    prefix = put(b"x", key="train/shard-000003.tar").rsplit("/", 1)[0] + "/"
    silent = silent_proxy(proxy, silence, "LIST")
    with pytest.raises(TimeoutError) as raised:
        list_shards(prefix, config=config(silent.endpoint_url))
    assert prefix in str(raised.value)
    assert "ReadTimeoutError" in type(raised.value.__cause__.__cause__).__name__  # the client's own, as the cause


@pytest.mark.timeout(60)
@pytest.mark.parametrize("silence", sorted(SILENCES))
@pytest.mark.parametrize("backend", HEADING_BACKENDS)
def test_a_silent_head_ends_in_an_error_naming_the_url(backend, silence, put, proxy, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    silent = silent_proxy(proxy, silence, "HEAD", backend)
    empty_range = {"start": 10, "end": 10} if backend == "boto3" else {}  # boto3 HEADs only for no bytes
    with pytest.raises(OSError) as raised:
        get_opener(backend)(url, config(silent.endpoint_url), **OPTIONS.get(backend, {}), **empty_range).read()
    assert url in str(raised.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("silence", sorted(SILENCES))
@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_a_silent_get_ends_in_an_error_naming_the_url(backend, silence, put, proxy, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    silent = silent_proxy(proxy, silence, "GET", backend)
    with pytest.raises(OSError) as raised:
        stream = get_opener(backend)(url, config(silent.endpoint_url), **OPTIONS.get(backend, {}))
        try:
            stream.read()
        finally:
            stream.close()
    assert url in str(raised.value)
