"""The local shard cache (``open_s3(cache_dir=...)``) over a real local S3: the same samples as without it, a
shard fetched once then read from disk for one HEAD, checked against the object's current version, the limit
held at every sample, leftovers never trusted, a full disk streamed through, readers of a shard being written
waiting for it."""
import functools
import json
import os
import pickle
import random
import subprocess
import threading
import warnings

import boto3
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext import wds_pipe
from torchdata_s3ext._config import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.cache import join_finalizers, open_cached
from torchdata_s3ext.s3.cache.store import ENTRY_OVERHEAD, CacheStore, cache_store
from torchdata_s3ext.s3.cache.writer import CacheWriter
from torchdata_s3ext.s3.stats import process_stats
from torchdata_s3ext.s3.settings import split_s3_settings
from torchdata_s3ext.testing import S3Proxy, seed_samples, tar_bytes



def _settled():
    """Wait for the copies being checked in the background (the reader does not wait for them)."""
    assert join_finalizers(timeout=30)


def _entries(cache_dir, suffix):
    return sorted(name for name in os.listdir(os.path.join(cache_dir, "entries")) if name.endswith(suffix))


def _object(s3_server, url) -> bytes:
    bucket, key = url[len("s3://"):].split("/", 1)
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()


def _open(url, cache_dir, limit=None, backend="boto3", **options):
    config = S3Config().resolved()
    return open_cached(url, config, functools.partial(get_opener(backend), url, config, **options), str(cache_dir), limit)


def test_cached_and_uncached_pipes_give_the_same_samples_and_the_second_epoch_costs_one_head_per_shard(wds_shards, tmp_path):
    shards = wds_shards(num_shards=3, samples_per_shard=4, image_size=32)
    uncached = list(wds_pipe(shards.urls, decode=False, shuffle=False))
    pipe = wds_pipe(shards.urls, decode=False, shuffle=False, cache_dir=tmp_path, cache_limit_bytes=10 << 20)
    before = pipe.stats.snapshot()
    assert list(pipe) == uncached
    first = pipe.stats - before
    assert (first.cache_misses, first.cache_hits, first.heads) == (3, 0, 3) and first.gets >= 3
    _settled()
    assert len(_entries(tmp_path, ".data")) == 3 and not _entries(tmp_path, ".part")
    before = pipe.stats.snapshot()
    assert list(pipe) == uncached
    second = pipe.stats - before
    assert (second.cache_hits, second.cache_misses, second.gets, second.heads, second.bytes_received) == (3, 0, 0, 3, 0)
    assert second.bytes_from_cache > 0 and second.cost_usd() == pytest.approx(3 * 0.0004 / 1000)


def test_a_cache_entry_holds_the_object_and_its_metadata(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=2).urls[0]
    with _open(url, tmp_path) as stream:
        stream.read()
    _settled()
    (meta_name,) = _entries(tmp_path, ".json")
    with open(tmp_path / "entries" / meta_name) as file:
        meta = json.load(file)
    body = _object(s3_server, url)
    assert meta["url"] == url and meta["size"] == len(body) and meta["complete"] is True and meta["etag"]
    (data_name,) = _entries(tmp_path, ".data")
    assert (tmp_path / "entries" / data_name).read_bytes() == body


def test_seeks_back_and_forward_while_the_shard_downloads_read_the_object(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=6, image_size=48).urls[0]
    body = _object(s3_server, url)
    rng = random.Random(0)
    # small parts, so that the seeks land in different parts and behind what was fetched
    with _open(url, tmp_path, part_size=4096, concurrency=2) as stream:
        assert stream.seekable()
        for _ in range(60):
            offset, size = rng.randrange(len(body)), rng.randrange(1, 9000)
            stream.seek(offset)
            assert stream.read(size) == body[offset:offset + size]
        stream.seek(0)
        assert stream.read() == body
    _settled()
    (data_name,) = _entries(tmp_path, ".data")
    assert (tmp_path / "entries" / data_name).read_bytes() == body  # the gaps were copied too


def test_a_forward_only_backend_stays_forward_only_and_is_cached(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=2).urls[0]
    with _open(url, tmp_path, backend="awscli") as stream:
        assert not stream.seekable()
        assert stream.read() == _object(s3_server, url)
    with _open(url, tmp_path, backend="awscli") as stream:
        assert stream.seekable()  # the hit is a local file


def test_an_object_overwritten_in_s3_is_fetched_again(wds_shards, s3_server, s3_bucket, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=2).urls[0]
    with _open(url, tmp_path) as stream:
        stream.read()
    changed = tar_bytes(list(seed_samples(3, seed=5)))
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=s3_bucket, Key=url.split("/", 3)[3], Body=changed)
    before = process_stats().snapshot()
    with _open(url, tmp_path) as stream:
        assert stream.read() == changed
    assert (process_stats() - before).cache_misses == 1
    with _open(url, tmp_path) as stream:
        assert stream.read() == changed
    assert (process_stats() - before).cache_hits == 1


def test_a_damaged_copy_is_never_trusted(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=2).urls[0]
    with _open(url, tmp_path) as stream:
        stream.read()
    _settled()
    (data_name,) = _entries(tmp_path, ".data")
    with open(tmp_path / "entries" / data_name, "r+b") as file:
        file.truncate(100)  # a power cut, or a hand
    with _open(url, tmp_path) as stream:
        assert stream.read() == _object(s3_server, url)


def test_the_last_read_returns_while_the_copy_is_still_checked_and_the_entry_appears_complete_after(
        wds_shards, s3_server, tmp_path, monkeypatch):
    url = wds_shards(num_shards=1, samples_per_shard=4, image_size=32).urls[0]
    body = _object(s3_server, url)
    hashing, release, slow_hash_calls = threading.Event(), threading.Event(), []

    def slow_hash(writer, chunks, hash_chunks=CacheWriter._hash):
        slow_hash_calls.append(len(chunks))
        hashing.set()
        assert release.wait(30)
        hash_chunks(writer, chunks)

    monkeypatch.setattr(CacheWriter, "_hash", slow_hash)
    with _open(url, tmp_path, part_size=4096) as stream:
        assert stream.read() == body  # not one byte hashed yet, and the last ones served
        stream.seek(0)
        assert stream.read(1000) == body[:1000]  # a read back after the end comes from the copy
    assert hashing.wait(10) and not release.is_set()
    assert not _entries(tmp_path, ".data") and _entries(tmp_path, ".part")  # still being checked
    assert not join_finalizers(timeout=0.2)
    waiter_results = []
    waiter = threading.Thread(target=lambda: waiter_results.append(_open(url, tmp_path).read()))
    before = process_stats().snapshot()
    waiter.start()  # another reader waits for the check, then reads the entry
    release.set()
    _settled()
    waiter.join(timeout=30)
    assert waiter_results == [body] and (process_stats() - before).cache_hits == 1 and slow_hash_calls
    assert not _entries(tmp_path, ".part")
    (data_name,) = _entries(tmp_path, ".data")
    assert (tmp_path / "entries" / data_name).read_bytes() == body
    (meta_name,) = _entries(tmp_path, ".json")
    assert json.loads((tmp_path / "entries" / meta_name).read_text())["complete"] is True


def test_a_byte_range_reads_the_copy_at_the_object_offsets_and_a_missed_range_is_not_cached(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=3).urls[0]
    body = _object(s3_server, url)
    config = S3Config().resolved()
    open_range = functools.partial(get_opener("boto3"), url, config)
    with open_cached(url, config, open_range, str(tmp_path), start=1000, end=3000) as stream:
        assert stream.read() == body[1000:3000]
    assert not _entries(tmp_path, ".data")
    with open_cached(url, config, open_range, str(tmp_path)) as stream:
        stream.read()
    before = process_stats().snapshot()
    with open_cached(url, config, open_range, str(tmp_path), start=1000, end=3000) as stream:
        assert stream.tell() == 1000 and stream.read() == body[1000:3000]
        stream.seek(1500)
        assert stream.read(10) == body[1500:1510]
    with open_cached(url, config, open_range, str(tmp_path), start=len(body) - 10) as stream:
        assert stream.read() == body[-10:]
    assert (process_stats() - before).gets == 0


def test_a_shard_larger_than_the_limit_is_streamed_uncached(wds_shards, s3_server, tmp_path, files_bytes):
    url = wds_shards(num_shards=1, samples_per_shard=2).urls[0]
    body = _object(s3_server, url)
    with _open(url, tmp_path, limit=len(body) + ENTRY_OVERHEAD - 1) as stream:
        assert stream.read() == body
    assert files_bytes(tmp_path) == 0


@pytest.mark.parametrize("prefetch", [False, True])
def test_the_limit_holds_at_every_sample_and_least_recently_used_shards_go_first(wds_shards, tmp_path, prefetch, files_bytes):
    shards = wds_shards(num_shards=5, samples_per_shard=3, image_size=32)
    limit = 2 * (max(_shard_sizes(shards.urls)) + ENTRY_OVERHEAD) + 100  # two shards at a time
    pipe = wds_pipe(shards.urls, decode=False, shuffle=False, cache_dir=tmp_path, cache_limit_bytes=limit,
                    prefetch=prefetch)
    for _ in range(2):
        keys = []
        for sample in pipe:
            assert files_bytes(tmp_path) <= limit
            keys.append(sample["__key__"])
        assert sorted(keys) == sorted(shards.keys)
    _settled()
    kept = sorted(name.split("-", 1)[1] for name in _entries(tmp_path, ".data"))
    if prefetch:  # the shard opened ahead is reserved while two are written: it may not fit, and stream uncached
        assert len(kept) <= 2
    else:
        assert kept == ["shard-000003.tar.data", "shard-000004.tar.data"]  # the last two read


def _shard_sizes(urls):
    client = boto3.client("s3")
    return [client.head_object(Bucket=url.split("/")[2], Key=url.split("/", 3)[3])["ContentLength"] for url in urls]


def test_a_restarted_job_reuses_the_cache_and_counts_it_in_the_limit(wds_shards, tmp_path):
    shards = wds_shards(num_shards=3, samples_per_shard=2)
    list(wds_pipe(shards.urls, decode=False, shuffle=False, cache_dir=tmp_path))
    _settled()
    charged = sum(_shard_sizes(shards.urls)) + 3 * ENTRY_OVERHEAD
    assert CacheStore(str(tmp_path), None).usage_bytes() == charged  # a new process's store sees the same
    small = CacheStore(str(tmp_path), charged)  # full: a new shard evicts the least recently used
    assert small.usage_bytes() == charged and small.fits(1)


def test_leftovers_of_a_killed_writer_are_removed_at_start_and_a_live_writer_s_are_kept(tmp_path):
    store = CacheStore(str(tmp_path), None)
    dead, live = store.key(None, "s3://bkt/dead.tar"), store.key(None, "s3://bkt/live.tar")
    for key in (dead, live):
        with open(store.path(key, ".json"), "w") as file:
            json.dump({"url": key, "etag": '"x"', "size": 10, "complete": False}, file)
        with open(store.path(key, ".part"), "wb") as file:
            file.write(b"12345")
    with open(store.path(store.key(None, "s3://bkt/stray.tar"), ".data"), "wb") as file:
        file.write(b"no metadata")
    holder = store.shard_lock(live)
    holder.acquire()
    try:
        assert CacheStore(str(tmp_path), None).usage_bytes() == 10 + ENTRY_OVERHEAD
        assert _entries(tmp_path, ".part") == [live + ".part"] and not _entries(tmp_path, ".data")
    finally:
        holder.release()


def test_a_full_disk_falls_back_to_streaming_with_one_warning_and_loses_no_sample(wds_shards, tmp_path, caplog):
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        shards = wds_shards(num_shards=4, samples_per_shard=4, image_size=160)  # ~1.2 MB of shards
        uncached = list(wds_pipe(shards.urls, decode=False, shuffle=False))
        cache_dir = mount_point / "cache"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cached = list(wds_pipe(shards.urls, decode=False, shuffle=False, cache_dir=cache_dir))
            _settled()
        assert cached == uncached
        full = [str(warning.message) for warning in caught if "disk is full" in str(warning.message)]
        assert len(full) == 1 and [r for r in caplog.records if "disk is full" in r.getMessage()]
        assert not _entries(cache_dir, ".part")
        assert list(wds_pipe(shards.urls, decode=False, shuffle=False, cache_dir=cache_dir)) == uncached
    finally:
        cache_store(str(mount_point / "cache"), None).write_failed = None
        if subprocess.run(["umount", str(mount_point)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_reader_of_a_shard_being_written_waits_and_reads_the_copy(wds_shards, s3_server, tmp_path):
    url = wds_shards(num_shards=1, samples_per_shard=4, image_size=32).urls[0]
    body = _object(s3_server, url)
    with S3Proxy(s3_server.endpoint_url) as proxy:
        config = S3Config(endpoint_url=proxy.endpoint_url).resolved()
        open_range = functools.partial(get_opener("boto3"), url, config, part_size=4096)
        writer = open_cached(url, config, open_range, str(tmp_path))
        half = writer.read(len(body) // 2)
        results = []
        reader = threading.Thread(target=lambda: results.append(open_cached(url, config, open_range, str(tmp_path)).read()))
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive() and not results  # waiting for the writer
        gets_of_the_writer_so_far = proxy.object_gets
        assert half + writer.read() == body
        writer.close()
        reader.join(timeout=30)
        assert results == [body]
        assert proxy.object_gets == -(-len(body) // 4096) >= gets_of_the_writer_so_far  # each part fetched once


def test_cache_options_pass_through_wds_pipe_and_the_pipe_pickles(tmp_path):
    assert split_s3_settings("boto3", {"cache_dir": "/c", "cache_limit_bytes": 5, "region": "x"}) == (
        {"region": "x"}, {"cache_dir": "/c", "cache_limit_bytes": 5})
    pipe = IterableWrapper(["s3://bkt/a.tar"]).open_s3(cache_dir=tmp_path, cache_limit_bytes=1 << 30)
    copy = pickle.loads(pickle.dumps(pipe))
    assert (copy.settings.cache_dir, copy.settings.cache_limit_bytes) == (str(tmp_path), 1 << 30)
    with pytest.raises(ValueError, match="cache_limit_bytes needs a cache_dir"):
        IterableWrapper([]).open_s3(cache_limit_bytes=10)
    with pytest.raises(TypeError, match="did you mean 'cache_dir'"):
        split_s3_settings("boto3", {"cache_dirs": "/c"})
