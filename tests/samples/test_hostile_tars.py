"""A hostile-input corpus: damaged tars made in-test, through both chains (``load_wds_shards`` and
``load_from_tar().group_wds_samples()``, which read with the same tar reader), every policy, seekable and
forward-only streams; each ends in the right samples or an error naming the shard, never silently short."""
import io
import re
import tarfile
import tracemalloc
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional

import boto3
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3, group_wds_samples)
from torchdata_s3ext.samples.policy import DataErrorWarning, ErrorCounts

pytestmark = pytest.mark.timeout(30)

URL = "s3://bucket/train/shard-000000.tar"
KEYS = [f"s{index}" for index in range(4)]
FIELDS = ("cls", "png")


def member_data(member_name: str) -> bytes:
    return (f"{member_name}:".encode() * 200)[:700]  # non-zero, more than one block, not block-aligned


def build_tar(member_names: List[str], data: Callable[[str], bytes] = member_data) -> bytes:
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member_name in member_names:
            info = tarfile.TarInfo(member_name)
            payload = data(member_name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return shard.getvalue()


SHARD = build_tar([f"{key}.{field}" for key in KEYS for field in FIELDS])
with tarfile.open(fileobj=io.BytesIO(SHARD)) as _tar:
    MEMBERS = _tar.getmembers()  # s0.cls, s0.png, s1.cls (index 2: the next sample's first member), ...
SECOND = MEMBERS[2]
END_OF_MEMBERS = -(-(MEMBERS[-1].offset_data + MEMBERS[-1].size) // 512) * 512


def with_header_field(shard: bytes, header_offset: int, start: int, value: bytes) -> bytes:
    """``shard`` with bytes ``start:start+len(value)`` of a header replaced and the checksum made valid."""
    header = bytearray(shard[header_offset:header_offset + 512])
    header[start:start + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return shard[:header_offset] + bytes(header) + shard[header_offset + 512:]


def flip_bit(shard: bytes, offset: int) -> bytes:
    return shard[:offset] + bytes([shard[offset] ^ 0x10]) + shard[offset + 1:]


class Case(NamedTuple):
    shard: bytes
    keys: List[str]  # what "skip" yields (and "raise" before its error)
    error: Optional[str] = None  # what the error says after the shard URL


NEGATIVE_512 = b"\xff" + (256 ** 11 - 512).to_bytes(11, "big")  # GNU base-256: -512 sends tarfile back a header
DAMAGED_HEADER = rf"damaged member header at byte {SECOND.offset}"
CUT = r"cut at byte \d+"
CASES: Dict[str, Case] = {
    "intact": Case(SHARD, KEYS),
    "empty tar": Case(b"\0" * 10240, []),
    "header checksum bit flip": Case(flip_bit(SHARD, SECOND.offset + 3), [], DAMAGED_HEADER),
    "header size bit flip": Case(flip_bit(SHARD, SECOND.offset + 124 + 5), [], DAMAGED_HEADER),
    "garbage size": Case(with_header_field(SHARD, SECOND.offset, 124, b"zz garbage\0"), [], DAMAGED_HEADER),
    "zeroed header": Case(SHARD[:SECOND.offset] + bytes(512) + SHARD[SECOND.offset + 512:], [], DAMAGED_HEADER),
    "negative size": Case(with_header_field(SHARD, SECOND.offset, 124, NEGATIVE_512), [],
                          rf"{DAMAGED_HEADER}: negative size -512"),
    "huge size": Case(with_header_field(SHARD, SECOND.offset, 124, b"77777777777\0"), ["s0"],
                      "unexpected end of data: member 's1.cls'"),
    "data bit flip": Case(flip_bit(SHARD, SECOND.offset_data + 10), KEYS),  # tar has no data checksum
    "cut inside a header": Case(SHARD[:SECOND.offset + 100], [], CUT),
    "cut at a member boundary": Case(SHARD[:SECOND.offset], [], CUT),
    "cut inside data": Case(SHARD[:SECOND.offset_data + 300], ["s0"], "unexpected end of data"),
    "cut inside padding": Case(SHARD[:SECOND.offset_data + SECOND.size + 10], ["s0"], "unexpected end of data|cut"),
    "cut inside the end-of-archive marker": Case(SHARD[:END_OF_MEMBERS + 100], KEYS[:3], CUT),
    "cut after the first end-of-archive block": Case(SHARD[:END_OF_MEMBERS + 700], KEYS),
    "garbage after the archive": Case(SHARD + b"trailing garbage", KEYS[:3], r"damaged member header at byte \d+"),
    "dot-dot member name": Case(build_tar(["s0.cls", "s0.png", "../s1.cls", "s2.cls"]), [], "outside shard"),
    "absolute member name": Case(build_tar(["s0.cls", "s0.png", "/s1.cls", "s2.cls"]), [], "outside shard"),
    "dot-slash member name": Case(build_tar(["./s0.cls", "s0.png"]), ["s0"]),
    "not a tar": Case(b"<Error>this object is not a tar</Error>" * 40, [], ""),
    "empty object": Case(b"", [], "empty file"),
}


class ForwardOnly(io.RawIOBase):
    """A stream that only reads forward, as most network bodies do."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        return self._data.readinto(buffer)


STREAMS = {"seekable": io.BytesIO, "forward-only": lambda data: io.BufferedReader(ForwardOnly(data))}
READERS = {
    "load_wds_shards": lambda pairs, on_error: IterableWrapper(pairs, deepcopy=False).load_wds_shards(on_error=on_error),
    "load_from_tar": lambda pairs, on_error: (
        IterableWrapper(pairs, deepcopy=False).load_from_tar().group_wds_samples(on_error=on_error)
    ),
}


def run(reader: str, on_error: str, shard: bytes, stream: str, url: str = URL):
    """``(keys yielded, error raised or None, warnings, error_counts)``."""
    pipe = READERS[reader]([(url, STREAMS[stream](shard))], on_error)
    keys: List[str] = []
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for sample in pipe:
                assert sample["__url__"] == url
                keys.append(sample["__key__"])
        except Exception as raised:  # the outcome under test
            error = raised
    messages = [str(warning.message) for warning in caught if warning.category is DataErrorWarning]
    return keys, error, messages, pipe.error_counts


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("on_error", ["raise", "skip", "warn"])
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_tar_gives_the_right_samples_or_an_error_naming_the_shard(case, reader, on_error, stream):
    expected = CASES[case]
    keys, error, messages, counts = run(reader, on_error, expected.shard, stream)
    if expected.error is None:
        assert error is None and messages == [] and counts == ErrorCounts()
        assert keys == expected.keys
        return
    assert counts == ErrorCounts(bad_shards=1)
    if on_error == "raise":
        assert error is not None, f"{case}: no error, {keys}"
        message = str(error)
        assert error.__cause__ is not None
    else:
        assert error is None and len(messages) == (1 if on_error == "warn" else 0)
        message = messages[0].replace("skipped: ", "", 1) if messages else None
    assert keys == expected.keys
    if message is not None:
        last = f"after sample '{keys[-1]}'" if keys else "before its first sample"
        assert message.startswith(f"bad shard '{URL}', {last}: "), message
        assert re.search(expected.error, message), message


def test_a_damaged_shard_is_skipped_and_the_next_one_read_by_both_readers():
    damaged = CASES["header checksum bit flip"].shard
    for reader in READERS:
        pairs = [(url, io.BytesIO(shard)) for url, shard in [("s3://b/0.tar", damaged), ("s3://b/1.tar", SHARD)]]
        pipe = READERS[reader](pairs, "skip")
        assert [(sample["__url__"], sample["__key__"]) for sample in pipe] == [("s3://b/1.tar", key) for key in KEYS]
        assert pipe.error_counts == ErrorCounts(bad_shards=1)


def test_a_shard_cut_inside_the_next_samples_first_member_keeps_the_complete_sample():
    shard = CASES["cut inside data"].shard
    keys, error, _, counts = run("load_wds_shards", "skip", shard, "forward-only")
    assert (keys, error, counts.bad_shards) == (["s0"], None, 1)


def tiny_members_tar(count: int) -> bytes:
    """``count`` one-byte members, one sample each, written header by header (tarfile's writer is slow)."""
    blocks = []
    for index in range(count):
        info = tarfile.TarInfo(f"{index:06d}.cls")
        info.size = 1
        blocks.append(info.tobuf(format=tarfile.USTAR_FORMAT) + b"7" + bytes(511))
    return b"".join(blocks) + bytes(10240)


@pytest.fixture(scope="module")
def tiny_members_shard() -> bytes:
    return tiny_members_tar(100_000)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reader", list(READERS))
def test_100000_tiny_members_stream_in_bounded_time(reader, tiny_members_shard):
    assert sum(1 for _ in run_pipe(reader, tiny_members_shard)) == 100_000


# tarfile keeps every TarInfo it has read (about 450 bytes a member) until the shard ends; our reader forgets
# them, so its memory stays flat.
@pytest.mark.parametrize("reader", list(READERS))
def test_tiny_members_stream_in_bounded_memory(reader):
    bytes_per_member = 10
    shard = tiny_members_tar(10_000)
    tracemalloc.start()
    try:
        assert sum(1 for _ in run_pipe(reader, shard)) == 10_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000 + 10_000 * bytes_per_member, peak  # the shard is 10 MB


def run_pipe(reader: str, shard: bytes):
    return READERS[reader]([(URL, io.BytesIO(shard))], "raise")


# --- over S3 (a real local server) -------------------------------------------------------------------------


@pytest.fixture
def hostile_urls(s3_bucket, wds_shards):
    intact = wds_shards(num_shards=1, samples_per_shard=2, prefix="ok/")
    client = boto3.client("s3")
    urls = []
    for name in ("header checksum bit flip", "negative size", "not a tar"):
        key = f"hostile/{name.replace(' ', '-')}.tar"
        client.put_object(Bucket=s3_bucket, Key=key, Body=CASES[name].shard)
        urls.append(f"s3://{s3_bucket}/{key}")
    return urls, intact


S3_BACKENDS = ["boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]


@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_load_wds_shards_over_s3_skips_every_hostile_shard_and_reads_the_intact_one(hostile_urls, backend):
    urls, intact = hostile_urls
    pipe = IterableWrapper(urls + intact.urls).open_s3(backend=backend).load_wds_shards(on_error="skip")
    assert [sample["__key__"] for sample in pipe] == intact.keys
    assert pipe.error_counts == ErrorCounts(bad_shards=3)


@pytest.mark.parametrize("index, match", [(0, DAMAGED_HEADER), (1, "negative size"), (2, "")])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("backend", S3_BACKENDS)
def test_load_from_tar_over_s3_names_the_shard_of_every_hostile_shard(hostile_urls, index, match, on_error, backend):
    urls, intact = hostile_urls
    pipe = (IterableWrapper(intact.urls + [urls[index]]).open_s3(backend=backend).load_from_tar()
            .group_wds_samples(on_error=on_error))
    keys: List[str] = []
    if on_error == "skip":
        keys = [sample["__key__"] for sample in pipe]
    else:
        with pytest.raises(tarfile.ReadError, match=rf"^bad shard '{re.escape(urls[index])}', before its first sample: .*{match}"):
            keys.extend(sample["__key__"] for sample in pipe)
    assert keys == intact.keys
    assert pipe.error_counts.bad_shards == 1
