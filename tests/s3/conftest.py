"""Fixtures of the S3 layer's tests: objects put on the local server, and fault proxies in front of it."""
import boto3
import pytest

from torchdata_s3ext.testing import FaultPlan, S3Proxy, S3ProxyProcess


@pytest.fixture
def put(s3_server, s3_bucket):
    """``put(data, key="object.bin") -> url``: the object on the local server."""
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)

    def put_object(data: bytes, key: str = "object.bin") -> str:
        client.put_object(Bucket=s3_bucket, Key=key, Body=data)
        return f"s3://{s3_bucket}/{key}"

    return put_object


@pytest.fixture
def proxy(s3_server):
    """``proxy(plan, own_process=False) -> S3Proxy``: a started proxy in front of the local server, stopped after
    the test; in a process of its own for a client that holds the GIL while it waits (``s3fileloader``)."""
    started = []

    def start(plan: FaultPlan, own_process: bool = False):
        kind = S3ProxyProcess if own_process else S3Proxy
        started.append(kind(s3_server.endpoint_url, plan).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


def _skip_unless_installed(backend: str) -> None:
    if backend == "s3torchconnector":
        pytest.importorskip("s3torchconnector")
    if backend == "s3fileloader":
        pytest.importorskip("torchdata._torchdata", reason="torchdata's native S3 extension")


@pytest.fixture
def skip_unless_installed():
    """``skip_unless_installed(backend)``: skip the test where the backend's optional client is missing."""
    return _skip_unless_installed
