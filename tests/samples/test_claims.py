"""Members that claim more than their shard holds: GNU sparse members (one hole of 3 GB, of 50 GB), a size field
of 1 TB over 4 KB of data, a member whose data would start past the object's end. On every backend and through
every chain, each ends in an error naming the shard and the member under ``raise``, and is counted and skipped
under ``skip`` (the complete sample before it kept); found without reading or allocating the claim, which a
child process under a limit on its address space shows."""
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from typing import Dict, List, NamedTuple

import boto3
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext
from torchdata_s3ext.samples.policy import ErrorCounts
from torchdata_s3ext.samples.tar import DamagedShard, tar_members

pytestmark = pytest.mark.timeout(120)

GB, TB = 1 << 30, 1 << 40


def member_data(member_name: str) -> bytes:
    return (f"{member_name}:".encode() * 200)[:700]


def header_block(member_name: str, size: int, tar_format: int = tarfile.USTAR_FORMAT, **fields) -> bytes:
    info = tarfile.TarInfo(member_name)
    info.size = size
    for name, value in fields.items():
        setattr(info, name, value)
    return info.tobuf(format=tar_format)


def member(member_name: str) -> bytes:
    data = member_data(member_name)
    return header_block(member_name, len(data)) + data + bytes(-len(data) % 512)


def sample(key: str) -> bytes:
    return member(f"{key}.cls") + member(f"{key}.png")


def with_field(block: bytes, start: int, value: bytes) -> bytes:
    """A header block with bytes ``start:start+len(value)`` replaced and its checksum made right again."""
    changed = bytearray(block)
    changed[start:start + len(value)] = value
    changed[148:156] = b" " * 8
    changed[148:156] = b"%06o\0 " % sum(changed)
    return bytes(changed)


def gnu_sparse_member(member_name: str, hole: int) -> bytes:
    """A GNU sparse member (type ``S``) that is one hole of ``hole`` bytes and no data, as ``tar --sparse
    --format=gnu`` writes a file made by ``truncate -s``: its map's one entry and its real size say ``hole``."""
    def number(value: int) -> bytes:
        return tarfile.itn(value, 12, tarfile.GNU_FORMAT)

    block = header_block(member_name, 0, tarfile.GNU_FORMAT, type=tarfile.GNUTYPE_SPARSE)
    block = with_field(block, 386, number(hole) + number(0))  # the sparse map: (offset, bytes)
    return with_field(block, 483, number(hole))  # the real size


def pax_sparse_member(member_name: str, hole: int) -> bytes:
    """A pax sparse member (format 1.0, ``tar --sparse --format=posix``): one hole of ``hole`` bytes."""
    sparse_map = f"1\n{hole}\n0\n".encode()
    sparse_map += bytes(-len(sparse_map) % 512)
    info = tarfile.TarInfo(f"GNUSparseFile.0/{member_name}")
    info.size = len(sparse_map)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": member_name,
                        "GNU.sparse.realsize": str(hole)}
    return info.tobuf(format=tarfile.PAX_FORMAT) + sparse_map


END = bytes(1024)
S0_END = len(sample("s0"))  # where the hostile member's header starts (3072)


class Claim(NamedTuple):
    shard: bytes
    error: str  # what the error says after "bad shard '<url>', after sample 's0': "


SPARSE = r"damaged member header at byte \d+: member 's1.cls' is a sparse file, which shards do not hold"
CLAIMS: Dict[str, Claim] = {
    "gnu sparse, a 3 GB hole": Claim(sample("s0") + gnu_sparse_member("s1.cls", 3 * GB) + sample("s2") + END, SPARSE),
    "gnu sparse, a 50 GB hole": Claim(sample("s0") + gnu_sparse_member("s1.cls", 50 * GB) + sample("s2") + END, SPARSE),
    "pax sparse, a 50 GB hole": Claim(sample("s0") + pax_sparse_member("s1.cls", 50 * GB) + sample("s2") + END, SPARSE),
    "a size of 1 TB over 4 KB": Claim(
        sample("s0") + header_block("s1.cls", TB, tarfile.GNU_FORMAT) + member_data("s1.cls") * 6,
        rf"unexpected end of data: member 's1.cls' \(header at byte {S0_END}\) holds {TB} bytes, "
        rf"the shard ends at byte {S0_END + 512 + 4200}"),
    "data past the object's end": Claim(
        sample("s0") + header_block("s1.cls", 4096),
        rf"unexpected end of data: member 's1.cls' \(header at byte {S0_END}\) holds 4096 bytes, "
        rf"the shard ends at byte {S0_END + 512}"),
}


def test_the_corpus_claims_what_it_says_to_tarfile():
    """The hand-made headers are what ``tarfile`` (and ``tar``) read them as: sparse members of 3 and 50 GB, a
    member of 1 TB."""
    sizes = {}
    for name, claim in CLAIMS.items():
        tar = tarfile.open(fileobj=io.BytesIO(claim.shard))
        hostile = next(info for info in tar if info.name.endswith("s1.cls"))  # tarfile cannot read past it
        sizes[name] = (hostile.issparse(), hostile.size)
    assert sizes == {
        "gnu sparse, a 3 GB hole": (True, 3 * GB), "gnu sparse, a 50 GB hole": (True, 50 * GB),
        "pax sparse, a 50 GB hole": (True, 50 * GB), "a size of 1 TB over 4 KB": (False, TB),
        "data past the object's end": (False, 4096),
    }


# --- every backend, every chain ------------------------------------------------------------------------------

BACKENDS = ["auto", "boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector", "local", "pipe"]
CHAINS = ["wds_pipe", "load_wds_shards", "load_from_tar"]


@pytest.fixture
def shard_urls(s3_bucket, tmp_path):
    """``shard_urls(backend, shards) -> [url]``: each shard put where ``backend`` reads it (the local S3 server,
    a local folder, a ``pipe:cat`` of a local file)."""
    client = boto3.client("s3")

    def put(backend: str, shards: Dict[str, bytes]) -> List[str]:
        urls = []
        for name, shard in shards.items():
            file_name = name.replace(" ", "-").replace(",", "").replace("'", "") + ".tar"
            if backend in ("local", "pipe"):
                path = tmp_path / file_name
                path.write_bytes(shard)
                urls.append(str(path) if backend == "local" else f"pipe:cat {path}")
            else:
                client.put_object(Bucket=s3_bucket, Key=f"hostile/{file_name}", Body=shard)
                urls.append(f"s3://{s3_bucket}/hostile/{file_name}")
        return urls

    return put


def chain(kind: str, backend: str, urls: List[str], on_error: str):
    opener = "auto" if backend == "pipe" else backend
    if kind == "wds_pipe":
        return torchdata_s3ext.wds_pipe(urls, backend=opener, shuffle=False, decode=False, on_error=on_error)
    opened = IterableWrapper(urls).open_s3(backend=opener)
    if kind == "load_wds_shards":
        return opened.load_wds_shards(on_error=on_error)
    return opened.load_from_tar().group_wds_samples(on_error=on_error)


@pytest.mark.parametrize("case", list(CLAIMS))
@pytest.mark.parametrize("kind", CHAINS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_member_claiming_past_its_shard_raises_naming_shard_and_member(shard_urls, backend, kind, case):
    [url] = shard_urls(backend, {case: CLAIMS[case].shard})
    pipe = chain(kind, backend, [url], "raise")
    keys: List[str] = []
    with pytest.raises(tarfile.ReadError) as raised:
        keys.extend(sample["__key__"] for sample in pipe)
    assert keys == ["s0"]  # the sample before it is whole: the claim is another key's
    assert str(raised.value).startswith(f"bad shard '{url}', after sample 's0': ")
    assert re.search(CLAIMS[case].error, str(raised.value)), str(raised.value)
    assert pipe.error_counts == ErrorCounts(bad_shards=1)


@pytest.mark.parametrize("kind", CHAINS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_members_claiming_past_their_shards_are_counted_and_skipped(shard_urls, backend, kind):
    intact = {"intact": sample("a") + sample("b") + END}
    urls = shard_urls(backend, {**{case: claim.shard for case, claim in CLAIMS.items()}, **intact})
    pipe = chain(kind, backend, urls, "skip")
    assert [(sample["__url__"], sample["__key__"]) for sample in pipe] == (
        [(url, "s0") for url in urls[:-1]] + [(urls[-1], "a"), (urls[-1], "b")])
    assert pipe.error_counts == ErrorCounts(bad_shards=len(CLAIMS))


# --- found at the header where the length is known, read no further than the data otherwise ----------------


class CountingStream(io.RawIOBase):
    """A stream over ``data`` that counts the bytes read from it; ``seekable`` as asked."""

    def __init__(self, data: bytes, seekable: bool) -> None:
        self._data = io.BytesIO(data)
        self._seekable = seekable
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("forward-only")
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = self._data.readinto(buffer)
        self.bytes_read += count
        return count


# 32 MB of data after a header that claims 64 MB: what a shard cut short, or a lying header, looks like.
CLAIM_OVER_DATA = sample("s0") + header_block("s1.cls", 64 << 20) + bytes(range(256)) * (32 << 12)


def test_a_seekable_shard_refuses_a_claim_past_its_end_at_the_header_reading_none_of_it():
    stream = CountingStream(CLAIM_OVER_DATA, seekable=True)
    items = list(tar_members("s3://b/cut.tar", stream))
    assert [item.name for item in items[:-1]] == ["s0.cls", "s0.png"]
    assert isinstance(items[-1], DamagedShard) and items[-1].member_name == "s1.cls"
    assert str(items[-1].error) == (f"unexpected end of data: member 's1.cls' (header at byte {S0_END}) holds "
                                    f"{64 << 20} bytes, the shard ends at byte {len(CLAIM_OVER_DATA)}")
    assert stream.bytes_read < 1 << 20


def test_a_forward_only_shard_reads_a_claim_no_further_than_its_end():
    stream = CountingStream(CLAIM_OVER_DATA, seekable=False)
    items = list(tar_members("s3://b/cut.tar", stream))
    assert isinstance(items[-1], DamagedShard) and items[-1].member_name == "s1.cls"
    assert str(items[-1].error).startswith("unexpected end of data: member 's1.cls'")
    assert stream.bytes_read == len(CLAIM_OVER_DATA)


# --- memory, in a child process under a limit on its address space ------------------------------------------

CHILD = r"""
import json, resource, sys, tarfile
import torch
from torch.utils.data.datapipes.iter import IterableWrapper
import torchdata_s3ext

def vm_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

backend, urls, headroom = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
limit = vm_bytes() + headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
opener = "auto" if backend == "pipe" else backend
outcomes = []
for kind in ("load_wds_shards", "load_from_tar"):
    for on_error in ("raise", "skip"):
        for url in urls:
            opened = IterableWrapper([url]).open_s3(backend=opener)
            pipe = (opened.load_wds_shards(on_error=on_error) if kind == "load_wds_shards"
                    else opened.load_from_tar().group_wds_samples(on_error=on_error))
            keys, error = [], None
            try:
                keys.extend(sample["__key__"] for sample in pipe)
            except BaseException as raised:
                error = f"{type(raised).__name__}: {raised}"
            outcomes.append([kind, on_error, url, keys, error, pipe.error_counts.bad_shards])
print(json.dumps({"outcomes": outcomes, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

HEADROOM = 2 * GB  # above the child's address space after importing torch: less than the 3 GB hole


def run_child(backend: str, urls: List[str], headroom: int = HEADROOM) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, backend, json.dumps(urls), str(headroom)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", BACKENDS)
def test_claims_cost_no_memory_in_a_process_with_2_gb_of_headroom(shard_urls, backend):
    urls = shard_urls(backend, {case: claim.shard for case, claim in CLAIMS.items()})
    result = run_child(backend, urls)
    for kind, on_error, url, keys, error, bad_shards in result["outcomes"]:
        assert keys == ["s0"] and bad_shards == 1, (kind, on_error, url, keys, error)
        if on_error == "raise":
            assert error.startswith(f"ReadError: bad shard '{url}', after sample 's0': "), error
            assert "'s1.cls'" in error, error
        else:
            assert error is None, error


# A member that is really there but bigger than the process may hold: a file whose blocks are holes on disk
# (no disk used), holding one member of 3 GB of zeros. Its data is read and does not fit: bad data naming it.
@pytest.mark.timeout(400)
def test_a_member_bigger_than_memory_is_bad_data_naming_it_not_a_memory_error(tmp_path):
    path = tmp_path / "big-member.tar"
    size = 3 * GB
    with open(path, "wb") as shard:
        shard.write(sample("s0") + header_block("s1.cls", size))
        shard.truncate(S0_END + 512 + size)
        shard.seek(0, io.SEEK_END)
        shard.write(sample("s2") + END)
    result = run_child("local", [str(path)])
    for kind, on_error, url, keys, error, bad_shards in result["outcomes"]:
        assert keys == ["s0"] and bad_shards == 1, (kind, on_error, keys, error)
        if on_error == "raise":
            assert error == (f"ReadError: bad shard '{path}', after sample 's0': member 's1.cls' (header at byte "
                             f"{S0_END}) holds {size} bytes, more than this process can hold in memory"), error
