"""Every backend opens bytes ``start .. end-1`` of an object, against the local S3 server: the bytes, the
offsets (absolute on the seekable backends), what is requested and counted, and tar reading from a member's
header."""
import io
import shlex
import tarfile

import boto3
import hypothesis
import pytest
from hypothesis import strategies as st

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.client.clients import boto3_client
from torchdata_s3ext.s3.io.ranged import RangedReader
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.s3.settings import split_s3_settings
from torchdata_s3ext.testing import seed_samples, tar_bytes

PART = 64 << 10
SIZE = 1_000_003  # no multiple of PART: the last part is short
DATA = bytes((index * 7 + index // 251) % 256 for index in range(SIZE))
RANGES = [
    (0, None), (0, 1), (0, PART), (PART, 2 * PART), (PART - 1, PART + 1), (100_000, 300_000), (12_345, None),
    (500_000, SIZE + 1000), (0, SIZE), (SIZE - 1, None), (SIZE, None), (SIZE, SIZE), (7, 7), (SIZE + 10, None),
    (SIZE + 10, SIZE + 20),
]
RANGED_OPTIONS = {"part_size": PART, "concurrency": 3}
BACKEND_OPTIONS = {
    "boto3": RANGED_OPTIONS, "fsspec": RANGED_OPTIONS, "iopath": RANGED_OPTIONS, "s3fileloader": {}, "awscli": {},
    "s3torchconnector": {}, "local": {}, "pipe": {},
}
SEEKABLE_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "local"]


def _skip_unless_installed(backend: str) -> None:
    if backend == "s3torchconnector":
        pytest.importorskip("s3torchconnector")
    if backend == "s3fileloader":
        pytest.importorskip("torchdata._torchdata", reason="torchdata's native S3 extension")


@pytest.fixture
def object_url(s3_bucket, tmp_path):
    """``object_url(backend, data)``: where ``backend`` reads ``data`` from (S3, a local file, or ``pipe:cat``)."""

    def put(backend: str, data: bytes = DATA) -> str:
        if backend in ("local", "pipe"):
            path = tmp_path / "object.bin"
            path.write_bytes(data)
            return str(path) if backend == "local" else f"pipe:cat {shlex.quote(str(path))}"
        boto3.client("s3").put_object(Bucket=s3_bucket, Key="object.bin", Body=data)
        return f"s3://{s3_bucket}/object.bin"

    return put


def open_range(backend, url, start=0, end=None, **options):
    return get_opener(backend)(url, S3Config().resolved(), **{**BACKEND_OPTIONS[backend], **options}, start=start, end=end)


def read_in_pieces(stream, piece=100_000) -> bytes:
    try:
        return b"".join(iter(lambda: stream.read(piece), b""))
    finally:
        stream.close()


@pytest.mark.parametrize("backend", list(BACKEND_OPTIONS))
def test_every_backend_reads_exactly_the_bytes_of_its_range(backend, object_url):
    _skip_unless_installed(backend)
    url = object_url(backend)
    for start, end in RANGES:
        assert read_in_pieces(open_range(backend, url, start, end)) == DATA[start:end], (start, end)


@pytest.mark.parametrize("backend", list(BACKEND_OPTIONS))
@pytest.mark.parametrize("start, end", [(-1, None), (-5, 10), (10, 5), (0, -1)])
def test_every_backend_refuses_a_negative_or_reversed_range_naming_the_url_before_any_request(backend, start, end, s3_server):
    _skip_unless_installed(backend)
    url = {"local": "/no/such/object.bin", "pipe": "pipe:exit 3"}.get(backend, "s3://no-such-bucket-here/object.bin")
    with pytest.raises(ValueError, match=f"start={start}, end={end} of '{url}'"):
        open_range(backend, url, start, end)


@pytest.mark.parametrize("backend", SEEKABLE_BACKENDS)
def test_seekable_backends_tell_and_seek_at_the_object_offsets_within_the_range(backend, object_url):
    _skip_unless_installed(backend)
    url = object_url(backend)
    start, end = 100_000, 300_000
    stream = open_range(backend, url, start, end)
    try:
        assert stream.seekable() and stream.tell() == start
        assert stream.read(10) == DATA[start:start + 10] and stream.tell() == start + 10
        assert stream.seek(0, io.SEEK_END) == end and stream.read() == b""
        assert stream.seek(-5, io.SEEK_END) == end - 5 and stream.read() == DATA[end - 5:end]
        inside = start + PART + 3  # in the second part
        assert stream.seek(inside) == inside and stream.read(PART) == DATA[inside:inside + PART]
        assert stream.seek(-PART, io.SEEK_CUR) == inside and stream.read(4) == DATA[inside:inside + 4]
        with pytest.raises(ValueError, match=f"before the start of the byte range {start}-{end} of {url}"):
            stream.seek(start - 1)
        assert stream.seek(start) == start and stream.read(3) == DATA[start:start + 3]
        assert stream.seek(end + 100) == end + 100 and stream.read(10) == b""
    finally:
        stream.close()


@pytest.mark.parametrize("backend", SEEKABLE_BACKENDS)
def test_a_range_past_the_object_is_empty_at_its_start(backend, object_url):
    _skip_unless_installed(backend)
    stream = open_range(backend, object_url(backend), SIZE + 10)
    try:
        assert stream.tell() == SIZE + 10 and stream.read() == b"" and stream.seek(0, io.SEEK_END) == SIZE + 10
    finally:
        stream.close()


def test_local_opens_the_plain_file_for_the_whole_file(object_url):
    stream = open_range("local", object_url("local"))
    try:
        assert isinstance(stream, io.BufferedReader)
    finally:
        stream.close()


@pytest.mark.parametrize("backend", ["boto3", "fsspec", "iopath", "awscli", "s3torchconnector"])
@pytest.mark.parametrize("start, end", [(100_000, 300_000), (PART, None), (0, PART + 1), (SIZE, None), (5, 5)])
def test_ranged_and_cli_backends_receive_only_the_bytes_of_the_range(backend, start, end, object_url):
    _skip_unless_installed(backend)
    url = object_url(backend)
    before = process_stats().snapshot()
    data = read_in_pieces(open_range(backend, url, start, end))
    counted = process_stats() - before
    assert data == DATA[start:end]
    assert counted.bytes_received == len(DATA[start:end])
    if backend == "boto3" and start < SIZE:
        assert counted.gets == -(-len(DATA[start:end]) // PART)  # one GET per part of the range, none outside


def test_boto3_asks_for_no_byte_outside_the_range_and_starts_at_start(object_url):
    url = object_url("boto3")
    ranges = []

    def record(params, **_):
        ranges.append(params["Range"])

    events = boto3_client(S3Config().resolved(), retries=False).meta.events
    events.register("provide-client-params.s3.GetObject", record, unique_id="test_byte_ranges.record")
    try:
        stream = open_range("boto3", url, 100_000, 300_000)
        stream.seek(250_000)
        stream.read(10)
        stream.seek(120_000)
        assert stream.read(5) == DATA[120_000:120_005]
        stream.close()
    finally:
        events.unregister("provide-client-params.s3.GetObject", unique_id="test_byte_ranges.record")
    assert ranges[0] == f"bytes=100000-{100_000 + PART - 1}"
    for header in ranges:
        first, last = map(int, header[len("bytes="):].split("-"))
        assert 100_000 <= first <= last < 300_000, header


def test_boto3_with_verify_etag_reads_a_range_without_checking_the_whole_object(object_url):
    url = object_url("boto3")
    assert read_in_pieces(open_range("boto3", url, 1000, 200_000, verify_etag=True)) == DATA[1000:200_000]


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    size=st.integers(0, 5000), bounds=st.tuples(st.integers(0, 6000), st.one_of(st.none(), st.integers(0, 6000))),
    part_size=st.integers(1, 1500), pooled=st.booleans(),
    moves=st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 2000)), max_size=6),
)
def test_ranged_reader_fetches_only_inside_its_range_and_reads_like_a_slice(size, bounds, part_size, pooled, moves):
    start, end = bounds
    hypothesis.assume(end is None or start <= end)
    data = bytes((index * 13) % 256 for index in range(size))
    fetched = []

    def fetch(first, stop):
        fetched.append((first, stop))
        return data[first:stop]

    def fetch_into(first, view):
        fetched.append((first, first + len(view)))
        view[:] = data[first:first + len(view)]

    source = {"fetch_into": fetch_into} if pooled else {"fetch": fetch}
    reader = RangedReader("s3://b/k", size, part_size=part_size, concurrency=2, start=start, end=end, **source)
    stop = max(start, size if end is None else min(end, size))
    try:
        assert (reader.start, reader.end, reader.size, reader.tell()) == (start, stop, size, start)
        assert reader.read(37) == data[start:stop][:37]
        for position, read_size in moves:
            position = max(position, start)
            reader.seek(position)
            assert reader.read(read_size) == data[position:stop][:read_size]
    finally:
        reader.close()
    assert all(start <= first < last <= stop for first, last in fetched), fetched


def test_ranged_reader_refuses_a_reversed_range_naming_the_url():
    with pytest.raises(ValueError, match="start=9, end=3 of 's3://b/k'"):
        RangedReader("s3://b/k", 100, fetch=lambda first, stop: b"", start=9, end=3)


def test_start_and_end_are_not_options_of_open_s3():
    with pytest.raises(TypeError, match="unknown keyword argument 'start'"):
        split_s3_settings("boto3", {"start": 5})
    with pytest.raises(TypeError, match=r"options of backend 'local': buffer_size\b"):
        split_s3_settings("local", {"buffer_sise": 5})


def _tar_and_member_offsets():
    data = tar_bytes(seed_samples(6, image_size=8))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
    return data, [member.offset for member in members], [member.name for member in members]


@pytest.mark.parametrize("backend", ["boto3", "local"])
@pytest.mark.parametrize("mode", ["r|*", "r:*"])
def test_tarfile_lists_the_members_from_a_mid_archive_header_offset(backend, mode, object_url):
    data, offsets, names = _tar_and_member_offsets()
    url = object_url(backend, data)
    member = len(offsets) // 2 + 1
    options = {"part_size": 1024} if backend == "boto3" else {}
    stream = open_range(backend, url, offsets[member], **options)
    try:
        with tarfile.open(fileobj=stream, mode=mode) as tar:
            read = [(info.name, tar.extractfile(info).read()) for info in tar]  # type: ignore[union-attr]
    finally:
        stream.close()
    assert [name for name, _ in read] == names[member:]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as whole:
        assert all(body == whole.extractfile(name).read() for name, body in read)  # type: ignore[union-attr]
