"""The shard cache's check of a miss's copy (``cache_verify``) over a real local S3 (moto, which keeps the
checksum an object was uploaded with): each level refuses a copy with a byte flipped in transit, serves the
bytes read all the same, warns once naming the URL, and leaves no entry; a stream of another version than
the HEAD's is not cached; an unknown level is refused where it is written."""
import functools
import io
import os
import pickle
import warnings

import boto3
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext import wds_pipe
from torchdata_s3ext._config import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.cache import join_finalizers, open_cached
from torchdata_s3ext.s3.cache import opening as cache_module
from torchdata_s3ext.s3.cache.integrity import CopyCheck, copy_check
from torchdata_s3ext.s3.cache.store import CacheStore, cache_store
from torchdata_s3ext.s3.client.checksums import checksum_b64
from torchdata_s3ext.s3.client.objects import ObjectHead, _full_object_checksum
from torchdata_s3ext.s3.stats import process_stats

BODY = os.urandom(3 << 20)  # several 1 MiB parts
FLIPPED_AT = 1_500_000

#: (upload's ChecksumAlgorithm, cache_verify, what the warning names); moto keeps the upload's checksum
LEVELS = [
    pytest.param("CRC32", "auto", "CRC32 checksum", id="auto-crc32"),
    pytest.param("CRC64NVME", "auto", "CRC64NVME checksum", id="auto-crc64nvme"),
    pytest.param("CRC32C", "auto", "CRC32C checksum", id="auto-crc32c"),
    pytest.param(None, "md5", "do not match its ETag", id="md5"),
]


class _FlippedInTransit(io.RawIOBase):
    """A backend's stream whose byte at ``offset`` arrives flipped (a bit error the transport missed); it tells
    the backend's version (ETag) and size, and reads forward only."""

    def __init__(self, stream, offset: int) -> None:
        self._stream, self._offset, self._position = stream, offset, 0
        self.etag, self.size = getattr(stream, "etag", None), getattr(stream, "size", None)

    def readable(self) -> bool:
        return True

    def read(self, size=-1) -> bytes:
        data = self._stream.read(size)
        start, self._position = self._position, self._position + len(data)
        if start <= self._offset < self._position:
            flipped = bytearray(data)
            flipped[self._offset - start] ^= 0x01
            data = bytes(flipped)
        return data

    def close(self) -> None:
        self._stream.close()
        super().close()


def _put(s3_server, bucket: str, key: str, body: bytes, algorithm=None) -> str:
    if algorithm in ("CRC64NVME", "CRC32C"):
        pytest.importorskip("awscrt", reason="botocore computes CRC64NVME and CRC32C with awscrt")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return f"s3://{bucket}/{key}"


def _opener(url: str, flip_at=None):
    config = S3Config().resolved()
    backend = functools.partial(get_opener("boto3"), url, config, part_size=1 << 20)
    if flip_at is None:
        return config, backend
    return config, lambda: _FlippedInTransit(backend(), flip_at)


def _read_through_cache(url: str, cache_dir, verify: str, flip_at=None) -> bytes:
    config, open_range = _opener(url, flip_at)
    with open_cached(url, config, open_range, str(cache_dir), verify=verify) as stream:
        data = stream.read()
    assert join_finalizers(timeout=30)
    return data


def _entries(cache_dir):
    return sorted(os.listdir(os.path.join(cache_dir, "entries")))


def _lock_is_free(cache_dir, url: str) -> bool:
    lock = cache_store(str(cache_dir), None).shard_lock(CacheStore.key(S3Config().resolved().endpoint_url, url))
    lock.acquire(timeout=0)
    lock.release()
    return True


@pytest.mark.parametrize("algorithm, verify, named", LEVELS)
def test_each_level_refuses_a_copy_with_a_flipped_byte_serves_what_was_read_and_warns_once_naming_the_url(
        s3_server, s3_bucket, tmp_path, caplog, algorithm, verify, named):
    url = _put(s3_server, s3_bucket, "flipped.tar", BODY, algorithm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = _read_through_cache(url, tmp_path, verify, flip_at=FLIPPED_AT)
    assert data[:FLIPPED_AT] == BODY[:FLIPPED_AT] and data[FLIPPED_AT] != BODY[FLIPPED_AT]  # the backend's bytes
    mismatches = [str(warning.message) for warning in caught if named in str(warning.message)]
    assert len(mismatches) == 1 and url in mismatches[0] and "not cached" in mismatches[0]
    assert len([record for record in caplog.records if named in record.getMessage()]) == 1
    assert _entries(tmp_path) == [] and _lock_is_free(tmp_path, url)
    before = process_stats().snapshot()
    assert _read_through_cache(url, tmp_path, verify) == BODY  # the next open fetches it again, and keeps it
    assert _read_through_cache(url, tmp_path, verify) == BODY
    assert (process_stats() - before).cache_misses == 1 and (process_stats() - before).cache_hits == 1


@pytest.mark.parametrize("algorithm, verify, named", LEVELS)
def test_each_level_keeps_a_whole_copy_of_the_object_with_no_warning(s3_server, s3_bucket, tmp_path, algorithm, verify, named):
    url = _put(s3_server, s3_bucket, "whole.tar", BODY, algorithm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _read_through_cache(url, tmp_path, verify) == BODY
    data_names = [name for name in _entries(tmp_path) if name.endswith(".data")]
    assert len(data_names) == 1 and (tmp_path / "entries" / data_names[0]).read_bytes() == BODY


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_our_crcs_agree_with_the_checksum_s3_keeps(s3_server, s3_bucket, algorithm):
    url = _put(s3_server, s3_bucket, "crc.bin", BODY, algorithm)
    head = boto3.client("s3", endpoint_url=s3_server.endpoint_url).head_object(
        Bucket=s3_bucket, Key="crc.bin", ChecksumMode="ENABLED")
    assert checksum_b64(algorithm, BODY) == head[f"Checksum{algorithm}"], url


@pytest.mark.parametrize("verify", ["auto", "size"])
def test_a_copy_shorter_than_its_head_says_is_not_cached(s3_server, s3_bucket, tmp_path, verify):
    url = _put(s3_server, s3_bucket, "short.tar", BODY)
    config = S3Config().resolved()
    with pytest.warns(UserWarning, match=f"{url}: {len(BODY) - 10} bytes read, its HEAD said {len(BODY)}; not cached"):
        with open_cached(url, config, lambda: io.BytesIO(BODY[:-10]), str(tmp_path), verify=verify) as stream:
            assert stream.read() == BODY[:-10]
        assert join_finalizers(timeout=30)
    assert _entries(tmp_path) == []


def test_a_stream_of_another_version_than_the_head_s_is_served_not_cached_and_warns_naming_the_url(s3_server, s3_bucket, tmp_path, monkeypatch):
    url = _put(s3_server, s3_bucket, "changing.tar", BODY)
    newer = os.urandom(len(BODY))

    def head_then_overwritten(*args, **kwargs):
        head = head_object(*args, **kwargs)
        _put(s3_server, s3_bucket, "changing.tar", newer)  # the object changes between the HEAD and the GETs
        return head

    head_object = cache_module.head_object
    monkeypatch.setattr(cache_module, "head_object", head_then_overwritten)
    with pytest.warns(UserWarning, match=f"{url}: its GET read ETag .*, its HEAD said .* \\(changed in between\\?\\); not cached"):
        assert _read_through_cache(url, tmp_path, "size") == newer
    assert _entries(tmp_path) == [] and _lock_is_free(tmp_path, url)
    monkeypatch.setattr(cache_module, "head_object", head_object)
    assert _read_through_cache(url, tmp_path, "size") == newer  # the next open sees the new version, and keeps it
    assert len([name for name in _entries(tmp_path) if name.endswith(".data")]) == 1


def test_an_unknown_cache_verify_is_a_value_error_naming_the_levels_and_a_misspelt_keyword_a_type_error(tmp_path):
    """And the level needs a cache, and travels with the pipe to DataLoader workers."""
    message = "cache_verify must be one of 'auto', 'md5', 'size', got 'crc'"
    with pytest.raises(ValueError, match=message):
        IterableWrapper(["s3://bkt/a.tar"]).open_s3(cache_dir=tmp_path, cache_verify="crc")
    with pytest.raises(ValueError, match=message):
        wds_pipe("s3://bkt/a-{000000..000001}.tar", cache_dir=tmp_path, cache_verify="crc")
    with pytest.raises(TypeError, match="did you mean 'cache_verify'"):
        IterableWrapper(["s3://bkt/a.tar"]).open_s3(cache_dir=tmp_path, cache_verfy="md5")
    with pytest.raises(ValueError, match="cache_verify needs a cache_dir, got cache_verify='md5' without one"):
        IterableWrapper(["s3://bkt/a.tar"]).open_s3(cache_verify="md5")
    pipe = IterableWrapper(["s3://bkt/a.tar"]).open_s3(cache_dir=tmp_path, cache_verify="md5")
    assert pipe.settings.cache_verify == "md5" and pickle.loads(pickle.dumps(pipe)).settings.cache_verify == "md5"


def test_the_levels_choose_the_cheapest_check_the_object_allows():
    md5 = "0" * 32
    crc = ObjectHead(10, '"etag"', None, ("CRC32", "AAAAAA=="))
    assert copy_check(crc, "auto") == CopyCheck("CRC32", "AAAAAA==")
    assert copy_check(crc, "size") == CopyCheck()
    assert copy_check(crc, "md5") == CopyCheck("CRC32", "AAAAAA==")  # no MD5 ETag: as "auto"
    both = ObjectHead(10, f'"{md5}"', md5, ("CRC32", "AAAAAA=="))
    assert copy_check(both, "auto").algorithm == "CRC32" and copy_check(both, "md5").algorithm == "MD5"
    assert copy_check(both, "md5", backend_checks_md5=True) == CopyCheck()  # boto3's verify_etag checked it
    sha = ObjectHead(10, f'"{md5}"', md5, ("SHA256", "x"))
    assert copy_check(sha, "auto") == CopyCheck()  # size and ETag: a SHA costs more than the copy
    assert copy_check(ObjectHead(10, '"e-2"'), "auto") == CopyCheck()


def test_a_composite_multipart_checksum_is_not_taken_for_the_object_s():
    full = {"ETag": '"abc-3"', "ChecksumCRC64NVME": "x", "ChecksumType": "FULL_OBJECT"}
    assert _full_object_checksum(full) == ("CRC64NVME", "x")
    assert _full_object_checksum({**full, "ChecksumType": "COMPOSITE"}) is None
    assert _full_object_checksum({"ETag": '"abc-3"', "ChecksumCRC32C": "y"}) is None  # multipart, type unsaid
    assert _full_object_checksum({"ETag": '"abc"', "ChecksumCRC32C": "y"}) == ("CRC32C", "y")


def test_without_awscrt_auto_checks_crc64nvme_objects_by_size_and_etag_and_says_so_once(monkeypatch, caplog):
    import logging
    import sys

    from torchdata_s3ext.s3.cache import integrity

    monkeypatch.setitem(sys.modules, "awscrt", None)  # what an install without the [crt] extra has
    monkeypatch.setattr(integrity, "_said_no_crt", False)
    head = ObjectHead(10, '"etag"', None, ("CRC64NVME", "AAAAAAAAAAA="))
    with caplog.at_level(logging.INFO, logger="torchdata_s3ext"):
        assert copy_check(head, "auto") == CopyCheck() and copy_check(head, "auto") == CopyCheck()
    said = [record.getMessage() for record in caplog.records if "awscrt" in record.getMessage()]
    assert len(said) == 1 and "torchdata-s3ext[crt]" in said[0]
    assert copy_check(ObjectHead(10, '"etag"', None, ("CRC32", "AAAAAA==")), "auto").algorithm == "CRC32"  # zlib's


def test_etags_written_with_or_without_quotes_or_a_weak_mark_are_the_same_version():
    from types import SimpleNamespace

    from torchdata_s3ext.s3.cache.opening import _version_change

    head = ObjectHead(10, '"abc"')
    for etag in ('"abc"', "abc", 'W/"abc"', None):
        assert _version_change("s3://b/k", SimpleNamespace(etag=etag, size=10), head) is None
    assert "s3://b/k: its GET read ETag \"abd\"" in _version_change("s3://b/k", SimpleNamespace(etag='"abd"', size=10), head)
    assert "read 11 bytes, its HEAD said 10" in _version_change("s3://b/k", SimpleNamespace(etag='"abc"', size=11), head)
