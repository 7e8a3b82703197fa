"""A resuming stream gives up within bounds: a run of faults gets ``max_attempts`` attempts unless it moves
the stream ``min_progress`` bytes on, and a stream resumes ``max_resumes`` times at most."""
import io
import os
from typing import List

import boto3
import pytest

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.client.errors import TransientError
from torchdata_s3ext.s3.io.streams import RESUMES_PER_ATTEMPT, ResumingReader
from torchdata_s3ext.testing import FaultPlan, S3Proxy

URL = "s3://bucket/train/shard-000000.tar"


class FlakyBody(io.RawIOBase):
    """``data`` from ``offset``, cut (a transient fault) after ``cut_after`` bytes while ``faults`` last."""

    def __init__(self, data: bytes, offset: int, cut_after: int, faults: List[int]) -> None:
        self._data, self._offset, self._left, self._faults = data, offset, cut_after, faults

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._left == 0 and self._faults[0] > 0 and self._offset < len(self._data):
            self._faults[0] -= 1
            raise TransientError(f"cut at byte {self._offset}")
        n = min(len(buffer), self._left if self._faults[0] > 0 else len(buffer), len(self._data) - self._offset)
        buffer[:n] = self._data[self._offset:self._offset + n]
        self._offset += n
        self._left -= n
        return n


def flaky_reader(data: bytes, cut_after: int, faults: int, max_attempts: int, **bounds) -> ResumingReader:
    remaining = [faults]
    opens = []

    def open_at(offset: int) -> io.RawIOBase:
        opens.append(offset)
        return FlakyBody(data, offset, cut_after, remaining)

    reader = ResumingReader(URL, open_at, max_attempts, **bounds)
    reader.opens = opens  # type: ignore[attr-defined]
    return reader


def test_a_run_of_faults_that_barely_moves_the_stream_gets_max_attempts_attempts():
    reader = flaky_reader(os.urandom(10_000), cut_after=10, faults=1000, max_attempts=3, min_progress=100)
    message = rf"{URL}: gave up at byte 30 after 2 resumes \(3 attempts since byte 10 advanced less than 100 bytes\): cut"
    with pytest.raises(OSError, match=message) as raised:
        io.BufferedReader(reader, buffer_size=64).read()
    assert reader.opens == [0, 10, 20]
    assert isinstance(raised.value.__cause__, TransientError)


def test_a_stream_that_keeps_moving_stops_at_its_budget_of_resumes():
    reader = flaky_reader(os.urandom(10_000), cut_after=60, faults=1000, max_attempts=3, min_progress=100, max_resumes=5)
    with pytest.raises(OSError, match=rf"{URL}: gave up at byte 360 after 5 resumes \(the stream's 5 resumes are spent\)"):
        io.BufferedReader(reader, buffer_size=64).read()
    assert len(reader.opens) == 6


def test_resumes_that_each_move_the_stream_far_enough_deliver_every_byte_once():
    data = os.urandom(10_000)
    reader = flaky_reader(data, cut_after=500, faults=12, max_attempts=2, min_progress=400, max_resumes=12)
    assert io.BufferedReader(reader, buffer_size=256).read() == data
    assert reader.resumes == 12


def test_the_default_budget_comes_from_max_attempts():
    reader = flaky_reader(b"x", cut_after=1, faults=0, max_attempts=5)
    assert reader.max_resumes == RESUMES_PER_ATTEMPT * 5


def test_a_failure_that_is_not_transient_is_raised_at_once():
    def open_at(offset: int) -> io.RawIOBase:
        raise FileNotFoundError("no such key")

    with pytest.raises(FileNotFoundError, match="no such key"):
        ResumingReader(URL, open_at, 3)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["awscli", "s3torchconnector"])
def test_a_link_that_stalls_on_every_get_is_given_up_after_max_attempts(backend, s3_server, s3_bucket):
    """Each GET delivers 64 KiB, then stalls longer than read_timeout: before, every resume renewed the
    attempts (about 64 launches of the CLI for 4 MB); now the run ends after max_attempts GETs."""
    if backend == "s3torchconnector":
        pytest.importorskip("s3torchconnector")
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=s3_bucket, Key="big.tar", Body=os.urandom(4 << 20))
    url = f"s3://{s3_bucket}/big.tar"
    with S3Proxy(s3_server.endpoint_url, FaultPlan(stall_every=1, stall_seconds=4)) as proxy:
        config = S3Config(endpoint_url=proxy.endpoint_url, max_attempts=3, read_timeout=1)
        stream = get_opener(backend)(url, config)
        try:
            with pytest.raises(OSError, match=r"gave up at byte \d+ after 2 resumes") as raised:
                stream.read()
            assert stream.raw.resumes == 2
        finally:
            stream.close()
        assert url in str(raised.value)
        assert proxy.object_gets <= 3
