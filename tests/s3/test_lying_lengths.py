"""A server whose lengths lie (a body shorter or longer than its ``Content-Length`` or range says, a HEAD that
gives another size than the GETs deliver) never passes for a complete object: every backend ends in exactly
the object's bytes or in an error naming its URL, after its attempts; and a zero-byte object reads as ``b""``."""
import os

import pytest

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.testing import FaultPlan

S3_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]
#: the backends that read an object's size from a HEAD (the others from their GETs' Content-Range)
HEADING_BACKENDS = {"fsspec", "s3fileloader", "awscli", "s3torchconnector"}
OBJECT_SIZE = 400_000
MAX_ATTEMPTS = 2
OPTIONS = {
    "boto3": {"part_size": 128 << 10, "concurrency": 2},
    "fsspec": {"part_size": 128 << 10, "concurrency": 2},
    "iopath": {"part_size": 128 << 10, "concurrency": 2},
    "s3torchconnector": {"part_size": 5 << 20, "buffer_size": 64 << 10},
}
LIES = {
    "short_body": FaultPlan(body_shortfall=100),
    "long_body": FaultPlan(body_surplus=100),
    "head_longer_than_gets": FaultPlan(head_size_offset=100),
    "head_shorter_than_gets": FaultPlan(head_size_offset=-100),
}


def read_object(backend: str, url: str, endpoint_url: str) -> bytes:
    config = S3Config(endpoint_url=endpoint_url, max_attempts=MAX_ATTEMPTS, read_timeout=5, connect_timeout=2)
    stream = get_opener(backend)(url, config, **OPTIONS.get(backend, {}))
    try:
        return stream.read()
    finally:
        stream.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lie", sorted(LIES))
@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_a_lying_length_ends_in_the_exact_bytes_or_an_error_naming_the_url(backend, lie, put, proxy, skip_unless_installed):
    skip_unless_installed(backend)
    data = os.urandom(OBJECT_SIZE)
    url = put(data)
    lying = proxy(LIES[lie], own_process=backend == "s3fileloader")
    try:
        received = read_object(backend, url, lying.endpoint_url)
    except OSError as error:
        assert url in str(error)
    else:
        assert received == data
    assert lying.object_gets <= 12  # attempts bounded: a few parts, each tried MAX_ATTEMPTS times


#: the lies each backend cannot turn into the object's bytes: a body cut short, and a body or HEAD that
#: disagrees with the GETs, where the backend reads the size from a HEAD. (s3fileloader's native handler
#: writes no more than the HEAD's size, so a surplus after the object's bytes never reaches the checked result.)
REPORTED = {
    (backend, lie) for backend in S3_BACKENDS for lie in LIES
    if lie == "short_body" or (lie == "long_body" and backend != "s3fileloader")
    or (lie.startswith("head") and backend in HEADING_BACKENDS)
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend, lie", sorted(REPORTED))
def test_a_lie_that_hides_the_object_is_reported_naming_the_url(backend, lie, put, proxy, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    lying = proxy(LIES[lie], own_process=backend == "s3fileloader")
    with pytest.raises(OSError) as raised:
        read_object(backend, url, lying.endpoint_url)
    assert url in str(raised.value)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend, lie", sorted(pair for pair in REPORTED if pair[1].endswith("body")))
def test_a_lying_body_is_retried_before_it_is_reported(backend, lie, put, proxy, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    lying = proxy(LIES[lie], own_process=backend == "s3fileloader")
    with pytest.raises(OSError, match=f"gave up (at byte \\d+ )?after ({MAX_ATTEMPTS} attempts|\\d+ resumes)"):
        read_object(backend, url, lying.endpoint_url)
    assert lying.object_gets >= MAX_ATTEMPTS


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_a_zero_byte_object_reads_as_no_bytes(backend, put, s3_server, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(b"", key="empty.bin")
    assert read_object(backend, url, s3_server.endpoint_url) == b""
