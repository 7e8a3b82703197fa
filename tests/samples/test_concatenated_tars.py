"""Tars back to back in one shard (``cat a.tar b.tar``, shards as webdataset's ``TarWriter`` writes them): read
on to the last archive, as ``tar --ignore-zeros`` lists them, under every policy, seekable and forward-only,
through both chains and over S3; ``skip`` keeps every complete sample of a damaged one.

webdataset 1.0's reader (``tarfile`` without ``ignore_zeros``) stops at the first archive's end-of-archive marker
and drops the rest without a word; we give what it gives, then the archives after it."""
import io
import tarfile
import warnings
from typing import Dict, List

import boto3
import pytest
import webdataset
from torch.utils.data.datapipes.iter import IterableWrapper
from webdataset.tariterators import group_by_keys as webdataset_group_by_keys
from webdataset.tariterators import tar_file_expander

import torchdata_s3ext  # noqa: F401  (registers open_s3, load_wds_shards, group_wds_samples)
from torchdata_s3ext.samples.policy import ErrorCounts
from test_hostile_tars import STREAMS  # noqa: E402  (tests/samples is on sys.path: a forward-only stream too)

pytestmark = pytest.mark.timeout(60)

URL = "s3://bucket/train/concatenated.tar"


def archive(keys: List[str]) -> bytes:
    """A shard as webdataset's ``TarWriter`` writes it (padded to tar's 10 KB records)."""
    shard = io.BytesIO()
    with webdataset.TarWriter(shard) as writer:
        for key in keys:
            writer.write({"__key__": key, "cls": key.encode(), "txt": f"text of {key}".encode()})
    return shard.getvalue()


def plain_archive(keys: List[str]) -> bytes:
    """The same members written by ``tarfile`` in ustar format, with no record padding after the marker."""
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key in keys:
            for field, data in (("cls", key.encode()), ("txt", f"text of {key}".encode())):
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return shard.getvalue()[:tar.offset + 1024]


def webdataset_keys(shard: bytes) -> List[str]:
    """The sample keys webdataset's own reader gives for ``shard``."""
    members = tar_file_expander([{"url": URL, "stream": io.BytesIO(shard)}])
    return [sample["__key__"] for sample in webdataset_group_by_keys(members)]


A, B, C = ["a0", "a1"], ["b0"], ["c0", "c1", "c2"]
LAYOUTS: Dict[str, List[bytes]] = {
    "two TarWriter shards": [archive(A), archive(B)],
    "three TarWriter shards": [archive(A), archive(B), archive(C)],
    "unpadded tarfile archives": [plain_archive(A), plain_archive(B)],
    "an empty archive between": [archive(A), bytes(10240), archive(B)],
}


READERS = {
    "load_wds_shards": lambda pipe, on_error: pipe.load_wds_shards(on_error=on_error),
    "load_from_tar": lambda pipe, on_error: pipe.load_from_tar().group_wds_samples(on_error=on_error),
}


def read(reader: str, on_error: str, shard: bytes, stream: str):
    pipe = READERS[reader](IterableWrapper([(URL, STREAMS[stream](shard))], deepcopy=False), on_error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "warn" must have nothing to say of an intact shard
        samples = list(pipe)
    return samples, pipe.error_counts


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("on_error", ["raise", "skip", "warn"])
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_concatenated_tars_give_what_webdataset_gives_of_each_archive(layout, reader, on_error, stream):
    archives = LAYOUTS[layout]
    samples, counts = read(reader, on_error, b"".join(archives), stream)
    assert [sample["__key__"] for sample in samples] == [key for one in archives for key in webdataset_keys(one)]
    assert all(sample["cls"] == sample["__key__"].encode() and sample["__url__"] == URL for sample in samples)
    assert counts == ErrorCounts()


def test_webdataset_reads_only_the_first_archive_of_concatenated_tars():
    """What we read beyond webdataset: it stops at the first end-of-archive marker."""
    assert webdataset_keys(archive(A) + archive(B)) == A


def cut_in_data(shard: bytes, member_name: str) -> bytes:
    """``shard`` cut one byte into the data of its member ``member_name`` (its header whole: the sample before
    it is complete)."""
    with tarfile.open(fileobj=io.BytesIO(shard), ignore_zeros=True) as tar:
        offset = tar.getmember(member_name).offset_data
    return shard[:offset + 1]


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("reader", list(READERS))
def test_skip_keeps_every_complete_sample_of_concatenated_tars_cut_in_the_second(reader, stream):
    shard = cut_in_data(archive(A) + archive(C), "c1.cls")
    samples, counts = read(reader, "skip", shard, stream)
    assert [sample["__key__"] for sample in samples] == A + ["c0"]
    assert counts == ErrorCounts(bad_shards=1)


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("reader", list(READERS))
def test_raise_gives_every_complete_sample_of_concatenated_tars_then_the_damage(reader, stream):
    shard = cut_in_data(archive(A) + archive(C), "c1.cls")
    pipe = READERS[reader](IterableWrapper([(URL, STREAMS[stream](shard))], deepcopy=False), "raise")
    keys: List[str] = []
    with pytest.raises(tarfile.ReadError, match=rf"^bad shard '{URL}', after sample 'c0': unexpected end of data: member 'c1.cls'"):
        keys.extend(sample["__key__"] for sample in pipe)
    assert keys == A + ["c0"]


@pytest.mark.parametrize("backend", ["boto3", "fsspec", "iopath", "awscli", "s3torchconnector"])
def test_concatenated_tars_over_s3_read_to_the_last_archive(s3_bucket, backend):
    archives = LAYOUTS["three TarWriter shards"]
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="cat.tar", Body=b"".join(archives))
    url = f"s3://{s3_bucket}/cat.tar"
    for make in READERS.values():
        pipe = make(IterableWrapper([url]).open_s3(backend=backend), "raise")
        assert [sample["__key__"] for sample in pipe] == A + B + C
