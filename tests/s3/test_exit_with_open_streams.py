"""A process that ends with streams still open (a script that breaks out of its loop) exits, on every backend:
no thread of ours or of a client we start keeps it alive, also with parts still in flight on a stalled link."""
import os
import pathlib
import subprocess
import sys

import pytest

from torchdata_s3ext.testing import FaultPlan

REPO = pathlib.Path(__file__).resolve().parents[2]
S3_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]
OBJECT_SIZE = 12 << 20
#: the child opens the object, reads a little, and ends with the stream referenced, unread and unclosed
CHILD = """
import sys
from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import get_opener

backend, url, endpoint_url = sys.argv[1:4]
options = {
    "s3torchconnector": {"part_size": 5 << 20},
    "boto3": {"part_size": 4 << 20, "concurrency": 2},
    "fsspec": {"part_size": 4 << 20, "concurrency": 2},
    "iopath": {"part_size": 4 << 20, "concurrency": 2},
}.get(backend, {})
stream = get_opener(backend)(url, S3Config(endpoint_url=endpoint_url, read_timeout=2, max_attempts=2), **options)
assert len(stream.read(1000)) == 1000
print("read", flush=True)
"""


def run_child(backend: str, url: str, endpoint_url: str) -> subprocess.CompletedProcess:
    # From the repository's root, so that the child imports this checkout of the package.
    return subprocess.run([sys.executable, "-c", CHILD, backend, url, endpoint_url], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=90)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_a_process_ending_with_an_open_stream_exits(backend, put, s3_server, skip_unless_installed):
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    child = run_child(backend, url, s3_server.endpoint_url)
    assert (child.returncode, child.stdout) == (0, "read\n"), child.stderr[-3000:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", [backend for backend in S3_BACKENDS if backend != "s3fileloader"])
def test_a_process_ending_with_parts_stalled_in_flight_exits(backend, put, proxy, skip_unless_installed):
    """(s3fileloader is left out: it reads the whole object at open, so no part is in flight afterwards.)"""
    skip_unless_installed(backend)
    url = put(os.urandom(OBJECT_SIZE))
    stalled = proxy(FaultPlan(stall_every=1, stall_seconds=300, stall_after_bytes=100, faults_from_byte=5 << 20))
    child = run_child(backend, url, stalled.endpoint_url)
    assert (child.returncode, child.stdout) == (0, "read\n"), child.stderr[-3000:]
