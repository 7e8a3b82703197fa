"""The boto3 fast path (ranged GETs, several in flight) returns exactly the object's bytes."""
import hashlib
import io
import itertools
import tarfile

import boto3
import hypothesis
import pytest
from hypothesis import strategies as st

from torchdata_s3ext import S3Config
from torchdata_s3ext.tools.bench.methods import MethodContext
from torchdata_s3ext.s3.io import parts
from torchdata_s3ext.s3.io.ranged import RangedReader
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.s3.backends import _boto3
from torchdata_s3ext.s3.client.objects import plain_md5


@pytest.fixture
def put_object(s3_bucket):
    client = boto3.client("s3")

    def put(data: bytes, key: str = "object.bin") -> str:
        client.put_object(Bucket=s3_bucket, Key=key, Body=data)
        return f"s3://{s3_bucket}/{key}"

    return put


def read_all(url, read_size=None, **options):
    stream = _boto3.open_url(url, S3Config().resolved(), **options)
    try:
        if read_size is None:
            return stream.read()
        return b"".join(iter(lambda: stream.read(read_size), b""))
    finally:
        stream.close()


@pytest.mark.parametrize(
    "size, part_size, concurrency",
    [(0, 1000, 2), (1, 1000, 2), (999, 1000, 2), (1000, 1000, 2), (1001, 1000, 1), (10_500, 1000, 3), (4096, 4096, 4)],
)
def test_ranged_read_is_byte_exact_for_any_size_and_part_size(size, part_size, concurrency, put_object):
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert read_all(put_object(data), part_size=part_size, concurrency=concurrency) == data


@hypothesis.settings(max_examples=15, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(size=st.integers(0, 5000), part_size=st.integers(1, 2048), read_size=st.integers(1, 3000))
def test_ranged_read_matches_plain_get_whatever_the_read_pattern(size, part_size, read_size, put_object):
    data = bytes((i * 7) % 251 for i in range(size))
    url = put_object(data, key=f"obj-{size}.bin")
    plain = boto3.client("s3").get_object(Bucket=url.split("/")[2], Key=url.split("/", 3)[3])["Body"].read()
    assert read_all(url, read_size=read_size, part_size=part_size, concurrency=2) == plain == data


def test_ranged_reader_reports_its_position_and_refuses_reads_once_closed(put_object):
    stream = _boto3.open_url(put_object(b"x" * 3000), S3Config().resolved(), part_size=1024)
    stream.read(100)
    assert stream.tell() == 100
    stream.close()
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)


@hypothesis.settings(max_examples=20, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    moves=st.lists(st.tuples(st.sampled_from(["set", "cur", "end"]), st.integers(-5000, 5000), st.integers(0, 3000)), max_size=12)
)
def test_ranged_reader_seeks_anywhere_like_a_file(moves, put_object):
    data = bytes((i * 13) % 256 for i in range(10_000))
    url = put_object(data, key="seek.bin")
    stream = _boto3.open_url(url, S3Config().resolved(), part_size=1000, concurrency=2)
    reference = io.BytesIO(data)
    assert stream.seekable()
    try:
        for whence_name, offset, read_size in moves:
            whence = {"set": io.SEEK_SET, "cur": io.SEEK_CUR, "end": io.SEEK_END}[whence_name]
            if whence == io.SEEK_SET:
                offset = abs(offset)
            target = {io.SEEK_SET: 0, io.SEEK_CUR: reference.tell(), io.SEEK_END: len(data)}[whence] + offset
            if target < 0:
                with pytest.raises(ValueError, match="negative seek"):
                    stream.seek(offset, whence)
                continue
            assert stream.seek(offset, whence) == reference.seek(offset, whence)
            assert stream.read(read_size) == reference.read(read_size)
            assert stream.tell() == reference.tell()
    finally:
        stream.close()


def test_tar_members_skipped_by_seeking_are_never_fetched(put_object):
    """Seekable, the stream is read by tarfile's random-access mode: members nobody reads cost no GET."""
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w") as tar:
        for name, size in (("a.bin", 100), ("big.bin", 500_000), ("b.bin", 100)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes([len(name)]) * size))
    url = put_object(shard.getvalue(), key="skip.tar")
    stream = _boto3.open_url(url, S3Config().resolved(), part_size=4096, concurrency=1)
    before = process_stats().snapshot()
    with tarfile.open(fileobj=stream, mode="r:*") as tar:
        members = {info.name: tar.extractfile(info).read() for info in tar if info.name != "big.bin"}
    assert members == {"a.bin": bytes([5]) * 100, "b.bin": bytes([5]) * 100}
    assert (process_stats() - before).bytes_received < 50_000  # not the 500,000 bytes of big.bin


def test_ranged_read_checks_content_against_a_plain_md5_etag(put_object, monkeypatch):
    url = put_object(bytes(range(256)) * 40)
    assert read_all(url, part_size=1000, verify_etag=True) == bytes(range(256)) * 40  # matches: no error
    monkeypatch.setattr(_boto3, "plain_md5", lambda response: "0" * 32)
    with pytest.raises(OSError, match="do not match the object's ETag"):
        read_all(url, part_size=1000, verify_etag=True)
    assert read_all(url, part_size=1000) == bytes(range(256)) * 40  # the check is opt-in


@pytest.mark.parametrize(
    "response, expected",
    [
        ({"ETag": '"9e107d9d372bb6826bd81d3542a419d6"'}, "9e107d9d372bb6826bd81d3542a419d6"),
        ({"ETag": '"9e107d9d372bb6826bd81d3542a419d6-3"'}, None),  # multipart upload
        ({"ETag": '"9e107d9d372bb6826bd81d3542a419d6"', "ServerSideEncryption": "aws:kms"}, None),
        ({"ETag": '"9e107d9d372bb6826bd81d3542a419d6"', "SSECustomerAlgorithm": "AES256"}, None),
        ({}, None),
    ],
)
def test_only_plain_single_part_etags_are_taken_as_md5(response, expected):
    assert plain_md5(response) == expected


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    size=st.integers(1, 20_000), part_size=st.integers(1, 3000), concurrency=st.integers(1, 4),
    read_sizes=st.lists(st.integers(1, 7000), min_size=1, max_size=8),
)
def test_parts_reuse_at_most_concurrency_plus_one_buffers_and_stay_byte_exact(size, part_size, concurrency, read_sizes):
    """Reads shorter than a part, spanning parts, or many parts long: the bytes are right and buffers are reused."""
    data = bytes((i * 31) % 256 for i in range(size))

    def fetch_into(start, view):
        view[:] = data[start:start + len(view)]

    reader = RangedReader("s3://b/k", size, part_size=part_size, concurrency=concurrency, fetch_into=fetch_into)
    most = 0
    chunks = []
    try:
        for read_size in itertools.cycle(read_sizes):
            chunk = reader.read(read_size)
            if not chunk:
                break
            chunks.append(chunk)
            most = max(most, reader._parts.lent)
    finally:
        reader.close()
    assert b"".join(chunks) == data
    if max(read_sizes) <= part_size:
        assert most <= concurrency + 1
    else:  # a read many parts long holds those parts until it has copied them
        assert most <= concurrency + 1 + max(read_sizes) // part_size + 1


def test_the_bench_passes_part_size_and_concurrency_to_ranged_backends_only():
    context = MethodContext(urls=("s3://b/k",), part_size=1 << 20, concurrency=3)
    assert context.ranged_options("boto3") == context.ranged_options("fsspec") == {"part_size": 1 << 20, "concurrency": 3}
    assert context.ranged_options("awscli") == {}
    assert MethodContext(urls=()).ranged_options("boto3") == {}


def test_a_body_whose_checksum_botocore_validates_is_read_through_botocore(monkeypatch):
    from botocore.httpchecksum import StreamingChecksumBody

    class Body(StreamingChecksumBody):
        def __init__(self, data):
            self._data = io.BytesIO(data)
            self._raw_stream = self  # would offer the fast path, were the checksum not to be checked

        def read(self, amt=None):
            return self._data.read(amt)

    view = memoryview(bytearray(5))
    assert _boto3._read_body_into(Body(b"hello"), view) == 5
    assert bytes(view) == b"hello"


def test_a_finished_stream_leaves_its_buffers_to_the_next_one_within_a_bound(monkeypatch):
    spare = parts.SpareBuffers()
    monkeypatch.setattr(parts, "_SPARE", spare)
    data = bytes(range(256)) * 40  # 10,240 bytes: 11 parts of 1,000

    def read_through():
        made = []
        take = spare.take

        def counting_take(size):
            before = len(spare._buffers)
            buffer = take(size)
            made.append(len(spare._buffers) == before)  # nothing was taken from the spares: a new buffer
            return buffer

        monkeypatch.setattr(spare, "take", counting_take)
        reader = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2,
                              fetch_into=lambda start, view: view.__setitem__(slice(None), data[start:start + len(view)]))
        assert b"".join(iter(lambda: reader.read(500), b"")) == data
        reader.close()
        return sum(made)

    assert read_through() == 3  # concurrency + 1 buffers made
    assert sum(map(len, spare._buffers)) <= 3 * 1000  # one stream's buffers: (concurrency + 1) * part_size
    assert read_through() == 0  # all taken from the spares


def object_bytes(size):
    return bytes((i * 37) % 256 for i in range(size))


def recording_fetch_into(data, buffers):
    """A ``fetch_into`` over ``data`` that keeps every buffer it is given, by id (so no id is reused)."""

    def fetch_into(start, view):
        buffers[id(view.obj)] = view.obj
        view[:] = data[start:start + len(view)]

    return fetch_into


@pytest.fixture
def spare(monkeypatch):
    """This process's spare buffers, empty for the test."""
    spare = parts.SpareBuffers()
    monkeypatch.setattr(parts, "_SPARE", spare)
    return spare


@pytest.mark.parametrize("concurrency", [1, 2, 5])
def test_a_stream_fills_at_most_concurrency_plus_one_buffers(concurrency, spare):
    data = object_bytes(50_000)
    buffers = {}
    reader = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=concurrency,
                          fetch_into=recording_fetch_into(data, buffers))
    chunks = []
    for read_size in itertools.cycle([1, 999, 1000, 700]):
        chunk = reader.read(read_size)
        if not chunk:
            break
        chunks.append(chunk)
        assert reader._parts.lent <= concurrency + 1
    reader.close()
    assert b"".join(chunks) == data
    assert len(buffers) == concurrency + 1  # 50 parts, in the same few buffers


def test_a_read_longer_than_the_whole_pool_returns_the_right_bytes_and_gives_the_extra_buffers_up(spare):
    data = object_bytes(20_000)
    reader = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2, fetch_into=recording_fetch_into(data, {}))
    assert reader.read(10) == data[:10]
    assert reader.read(15_000) == data[10:15_010]  # 16 parts, with 3 buffers in the pool
    assert reader._parts.lent <= 3
    buffer = bytearray(4_000)
    assert reader.readinto(buffer) == 4_000 and bytes(buffer) == data[15_010:19_010]
    assert reader.read() == data[19_010:]
    reader.close()


def test_the_spare_buffers_take_the_part_size_of_the_stream_that_leaves_them(spare):
    data = object_bytes(5 << 20)

    def buffers_of_a_stream(part_size):
        buffers = {}
        reader = RangedReader("s3://b/k", len(data), part_size=part_size, concurrency=2,
                              fetch_into=recording_fetch_into(data, buffers))
        assert b"".join(iter(lambda: reader.read(300 << 10), b"")) == data
        reader.close()
        return buffers  # kept alive, so that no id is reused

    first = buffers_of_a_stream(1 << 20)
    assert len(first) == 3 and {id(buffer) for buffer in spare._buffers} == set(first)
    second = buffers_of_a_stream(1 << 20)
    assert set(second) == set(first)  # the next stream of that part size starts on them
    other = buffers_of_a_stream(512 << 10)
    assert len(other) == 3 and not set(other) & set(first)  # another part size: new buffers...
    assert {id(buffer) for buffer in spare._buffers} == set(other)  # ... that replace the spares


def test_the_spare_buffers_hold_at_most_one_streams_buffers(spare):
    data = object_bytes(10_000)
    readers = [RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2, fetch_into=recording_fetch_into(data, {}))
               for _ in range(3)]
    for reader in readers:
        assert reader.read() == data
        reader.close()
    assert len(spare._buffers) == 3  # concurrency + 1, not the 9 the three streams had


@pytest.mark.parametrize("mode", ["fetch", "fetch_into"])
def test_an_md5_mismatch_raises_before_the_last_part_is_handed_out(mode):
    data = object_bytes(3000)
    source = {"fetch": lambda start, end: data[start:end]} if mode == "fetch" else {"fetch_into": recording_fetch_into(data, {})}
    reader = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2, content_md5="0" * 32, **source)
    assert reader.read(2000) == data[:2000]
    with pytest.raises(OSError, match="do not match the object's ETag"):
        reader.read(1)
    reader.close()
    matching = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2,
                            content_md5=hashlib.md5(data).hexdigest(), **source)
    assert matching.read() == data
    matching.close()


def test_a_seek_outside_the_window_ends_the_md5_check():
    data = object_bytes(5000)
    reader = RangedReader("s3://b/k", len(data), fetch=lambda start, end: data[start:end], part_size=1000,
                          concurrency=1, content_md5="0" * 32)
    reader.seek(3500)  # parts 0-2 are never fetched: the object cannot be hashed
    assert reader.read() == data[3500:]
    reader.close()


def test_with_an_md5_check_fetch_into_gets_a_new_buffer_for_every_part(spare):
    data = object_bytes(10_000)
    buffers = {}
    reader = RangedReader("s3://b/k", len(data), part_size=1000, concurrency=2,
                          content_md5=hashlib.md5(data).hexdigest(), fetch_into=recording_fetch_into(data, buffers))
    assert b"".join(iter(lambda: reader.read(700), b"")) == data
    reader.close()
    assert len(buffers) == 10  # the hashing thread may read a part after the reader is done with it
    assert not spare._buffers


def test_a_part_that_failed_fails_every_later_read():
    data = object_bytes(5000)

    def fetch(start, end):
        if start == 2000:
            raise OSError("part 2 is gone")
        return data[start:end]

    reader = RangedReader("s3://b/k", len(data), fetch=fetch, part_size=1000, concurrency=2)
    assert reader.read(1500) == data[:1500]
    for _ in range(2):
        with pytest.raises(OSError, match="part 2 is gone"):
            reader.read(1000)
    reader.close()


def test_a_whole_part_fetched_as_bytes_is_returned_without_a_copy():
    data = object_bytes(3000)
    fetched = {}

    def fetch(start, end):
        fetched[start] = data[start:end]
        return fetched[start]

    reader = RangedReader("s3://b/k", len(data), fetch=fetch, part_size=1000, concurrency=2)
    assert reader.read(1000) is fetched[0]
    reader.close()


def test_a_short_part_is_an_error_naming_its_bytes():
    reader = RangedReader("s3://b/k", 3000, fetch=lambda start, end: b"x" * (end - start - 1), part_size=1000)
    with pytest.raises(OSError, match="bytes 0-999 came back as 999 bytes, not 1000"):
        reader.read(1)
    reader.close()


def test_the_reader_takes_exactly_one_of_fetch_and_fetch_into_and_positive_sizes():
    with pytest.raises(TypeError, match="one of fetch and fetch_into"):
        RangedReader("s3://b/k", 10)
    with pytest.raises(TypeError, match="one of fetch and fetch_into"):
        RangedReader("s3://b/k", 10, fetch=lambda start, end: b"", fetch_into=lambda start, view: None)
    with pytest.raises(ValueError, match="must be positive, got 0 and 6"):
        RangedReader("s3://b/k", 10, fetch=lambda start, end: b"", part_size=0)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    size=st.integers(1, 20_000), part_size=st.integers(1, 3000),
    reads=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 7000)), min_size=1, max_size=8),
)
def test_read_after_is_the_prefix_then_a_read(size, part_size, reads):
    """``read_after(prefix, n)`` returns what ``prefix + read(n)`` would, and moves as ``read(n)`` does."""
    data = bytes((i * 31) % 256 for i in range(size))
    reader = RangedReader("s3://b/k", size, part_size=part_size, concurrency=2,
                          fetch_into=lambda start, view: view.__setitem__(slice(None), data[start:start + len(view)]))
    position = 0
    try:
        for prefix, read_size in reads:
            got = reader.read_after(prefix, read_size)
            assert got == prefix + data[position:position + read_size]
            assert type(got) is bytes
            position = min(position + read_size, size)
            assert reader.tell() == position
    finally:
        reader.close()
