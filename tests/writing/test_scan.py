"""Indexing shards written by others from their tar headers: the readers' sample counts, few GETs and bytes for
large members, one pass for small ones, and a damaged shard named."""
import io
import os
import tarfile

import boto3
import pytest
import webdataset

from torchdata_s3ext import S3Config
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.writing import ShardWriter
from torchdata_s3ext.writing.scan import HEADER_WINDOW, scan_shard

from writing_samples import MIB


def webdataset_shard(samples):
    """A shard as webdataset's TarWriter writes it by default (a PAX header per member: float mtimes)."""
    buffer = io.BytesIO()
    with webdataset.TarWriter(buffer) as writer:
        for sample in samples:
            writer.write(sample)
    return buffer.getvalue()


def raw_tar(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def put(s3_server, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)

    def put_object(data: bytes, key: str = "shard.tar") -> str:
        client.put_object(Bucket=s3_bucket, Key=key, Body=data)
        return f"s3://{s3_bucket}/{key}"

    return put_object


def scanned(url, full_read=False):
    before = process_stats().snapshot()
    record = scan_shard(url, S3Config().resolved(), full_read=full_read)
    return record, process_stats().snapshot() - before


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_webdataset_shard_is_counted_as_the_readers_count_it(where, put, tmp_path):
    samples = [{"__key__": f"dir/s{index}", "jpg": os.urandom(5000), "cls": index} for index in range(7)]
    data = webdataset_shard(samples)
    if where == "s3":
        url = put(data)
    else:
        url = str(tmp_path / "shard.tar")
        (tmp_path / "shard.tar").write_bytes(data)
    record, _ = scanned(url)
    assert (record.url, record.nsamples, record.filesize, record.fields) == (url, 7, len(data), ("cls", "jpg"))


def test_members_of_no_sample_and_directories_are_not_counted_and_names_are_normalised(tmp_path):
    (tmp_path / "shard.tar").write_bytes(raw_tar([
        ("README", b"x"), ("dir", None), ("./a.jpg", b"1"), ("a.cls", b"2"), ("__index__/x.y", b"3"),
        ("b." + "f" * 120, b"4"),  # a GNU long name
    ]))
    record, _ = scanned(str(tmp_path / "shard.tar"))
    assert record.nsamples == 2 and record.fields == ("cls", "f" * 120, "jpg")


def test_the_scan_agrees_with_the_index_shardwriter_wrote(s3_bucket):
    with ShardWriter(f"s3://{s3_bucket}/w/shard-%06d.tar", max_samples=5) as writer:
        for index in range(12):
            writer.write({"__key__": f"k{index:03d}", "png": os.urandom(3000), "json": {"i": index}})
    for shard in writer.shards:
        record, _ = scanned(shard.url)
        assert (record.nsamples, record.filesize, record.etag, record.fields) == (
            shard.nsamples, shard.filesize, shard.etag, shard.fields)


def test_large_members_cost_one_window_each_not_their_data(put):
    samples = [{"__key__": f"s{index}", "a.bin": os.urandom(2 * MIB), "b.bin": os.urandom(MIB)} for index in range(4)]
    url = put(webdataset_shard(samples))
    record, requests = scanned(url)
    assert record.nsamples == 4
    assert requests.heads == 1 and requests.gets <= 8 + 1  # a window per member, and the archive's tail
    assert requests.bytes_received <= 9 * HEADER_WINDOW


def test_small_members_are_read_in_one_pass_after_a_few_windows(put):
    samples = [{"__key__": f"s{index:04d}", "jpg": os.urandom(80_000), "cls": index} for index in range(100)]
    data = webdataset_shard(samples)
    record, requests = scanned(put(data))
    assert record.nsamples == 100
    assert requests.gets <= 3 + 2 + 1  # three windows, the pass (a part of 8 MiB or two), the tail
    assert requests.bytes_received <= len(data) + 3 * HEADER_WINDOW + 20480


def test_full_read_reads_each_shard_in_one_pass(put):
    samples = [{"__key__": f"s{index}", "bin": os.urandom(MIB)} for index in range(4)]
    data = webdataset_shard(samples)
    record, requests = scanned(put(data), full_read=True)
    assert record.nsamples == 4 and requests.bytes_received >= len(data) and requests.gets <= 2 + 1


@pytest.mark.parametrize("damage", ["cut_in_a_header", "garbage_header", "not_a_tar"])
def test_a_damaged_shard_is_an_error_naming_it(damage, put):
    data = webdataset_shard([{"__key__": f"s{index}", "bin": b"x" * 3000} for index in range(3)])
    if damage == "cut_in_a_header":
        data = data[:512 * 3 + 200]
    elif damage == "garbage_header":
        data = data[:4608] + b"\xff" * 512 + data[5120:]
    else:
        data = b"just some bytes" * 100
    url = put(data)
    with pytest.raises(ValueError, match=rf"^{url}: (not a readable tar shard|damaged shard)"):
        scanned(url)
