"""The shard cache shared by a machine's processes: DataLoader workers and separate jobs fetch each shard once
(GETs counted at a proxy), a limit smaller than the dataset holds at every moment while every epoch still has
every sample once, and a job killed mid-download leaves nothing a later job trusts."""
import os
import signal
import subprocess
import sys
import threading

import pytest
from torch.utils.data import DataLoader

from torchdata_s3ext import wds_pipe
from torchdata_s3ext.s3.cache import join_finalizers
from torchdata_s3ext.s3.cache.store import ENTRY_OVERHEAD, CacheStore
from torchdata_s3ext.testing import S3Proxy

#: a job reading every shard through the cache, in a process of its own: argv = cache_dir, then the URLs
_JOB = """
import sys
from torchdata_s3ext import wds_pipe
keys = [sample["__key__"] for sample in wds_pipe(sys.argv[2:], decode=False, shuffle=False, cache_dir=sys.argv[1])]
print(len(keys))
"""

#: reads half of one shard through the cache, says so, then waits to be killed: argv = cache_dir, URL
_KILLED = """
import functools, sys, time
from torchdata_s3ext._config import S3Config
from torchdata_s3ext.s3.backends import get_opener
from torchdata_s3ext.s3.cache import open_cached
config = S3Config().resolved()
url = sys.argv[2]
stream = open_cached(url, config, functools.partial(get_opener("boto3"), url, config, part_size=4096), sys.argv[1])
stream.read(10000)
print("half", flush=True)
time.sleep(60)
"""


#: reads every shard through the cache, its copies' hashing slowed, and exits at once, in the main process or
#: in a DataLoader worker (fork): argv = where, cache_dir, then the URLs
_EXITS_AT_ONCE = """
import sys, time
from torch.utils.data import DataLoader
from torchdata_s3ext import wds_pipe
from torchdata_s3ext.s3.cache.writer import CacheWriter
hash_chunks = CacheWriter._hash
def slow_hash(writer, chunks):
    time.sleep(0.3)
    hash_chunks(writer, chunks)
CacheWriter._hash = slow_hash
pipe = wds_pipe(sys.argv[3:], decode=False, shuffle=False, cache_dir=sys.argv[2])
workers = 1 if sys.argv[1] == "worker" else 0
loader = DataLoader(pipe, batch_size=None, num_workers=workers, multiprocessing_context="fork" if workers else None)
print(len(list(loader)))
"""


class _Watcher:
    """The most the cache's files took at any look, looking every millisecond or so."""

    def __init__(self, cache_dir, files_bytes) -> None:
        self.cache_dir, self.most, self._stop = cache_dir, 0, threading.Event()
        self._files_bytes = files_bytes
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.most = max(self.most, self._files_bytes(self.cache_dir))

    def __enter__(self) -> "_Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _env(proxy: S3Proxy):
    return dict(os.environ, AWS_ENDPOINT_URL=proxy.endpoint_url)


def test_two_dataloader_workers_fetch_each_shard_once_and_the_second_epoch_fetches_nothing(wds_shards, s3_server, tmp_path):
    shards = wds_shards(num_shards=4, samples_per_shard=3, image_size=32)
    with S3Proxy(s3_server.endpoint_url) as proxy:
        pipe = wds_pipe(shards.urls, decode=False, endpoint_url=proxy.endpoint_url, cache_dir=tmp_path)
        loader = DataLoader(pipe, batch_size=None, num_workers=2)
        assert sorted(sample["__key__"] for sample in loader) == sorted(shards.keys)
        assert proxy.object_gets == 4  # one part each
        before = pipe.stats.snapshot()
        assert sorted(sample["__key__"] for sample in loader) == sorted(shards.keys)
        assert proxy.object_gets == 4
        second = pipe.stats - before
        assert (second.cache_hits, second.cache_misses, second.gets) == (4, 0, 0)  # the workers' counts, seen here


def test_two_jobs_at_once_fetch_each_shard_once(wds_shards, s3_server, tmp_path):
    shards = wds_shards(num_shards=4, samples_per_shard=3, image_size=32)
    with S3Proxy(s3_server.endpoint_url) as proxy:
        jobs = [subprocess.Popen([sys.executable, "-c", _JOB, str(tmp_path), *shards.urls], env=_env(proxy),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [job.communicate(timeout=120) for job in jobs]
        assert [job.returncode for job in jobs] == [0, 0], [err[-2000:] for _, err in outputs]
        assert [out.strip() for out, _ in outputs] == ["12", "12"]
        assert proxy.object_gets == 4


def test_a_limit_smaller_than_the_dataset_holds_at_every_moment_and_every_epoch_has_every_sample_once(
    wds_shards, tmp_path, files_bytes
):
    shards = wds_shards(num_shards=6, samples_per_shard=3, image_size=48)
    largest = max(_sizes(shards.urls))
    limit = 3 * (largest + ENTRY_OVERHEAD)  # half the dataset: two workers' downloads and one more
    pipe = wds_pipe(shards.urls, decode=False, cache_dir=tmp_path, cache_limit_bytes=limit, seed=0)
    loader = DataLoader(pipe, batch_size=None, num_workers=2)
    with _Watcher(tmp_path, files_bytes) as watcher:
        for _ in range(2):
            keys = []
            for sample in loader:
                assert files_bytes(tmp_path) <= limit
                keys.append(sample["__key__"])
            assert sorted(keys) == sorted(shards.keys)
    assert 0 < watcher.most <= limit
    assert pipe.stats.cache_misses >= 6


def _sizes(urls):
    import boto3

    client = boto3.client("s3")
    return [client.head_object(Bucket=url.split("/")[2], Key=url.split("/", 3)[3])["ContentLength"] for url in urls]


def test_a_job_killed_mid_download_leaves_no_entry_a_later_job_trusts(wds_shards, s3_server, tmp_path):
    import boto3

    url = wds_shards(num_shards=1, samples_per_shard=4, image_size=48).urls[0]
    bucket, key = url[len("s3://"):].split("/", 1)
    body = boto3.client("s3", endpoint_url=s3_server.endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
    job = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path), url], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "half"
        entries = os.listdir(tmp_path / "entries")
        assert any(name.endswith(".part") for name in entries) and not any(name.endswith(".data") for name in entries)
    finally:
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    store = CacheStore(str(tmp_path), None)  # a later job's first use cleans what the killed one left
    assert os.listdir(tmp_path / "entries") == []
    from torchdata_s3ext.s3.stats import process_stats

    before = process_stats().snapshot()
    pipe = wds_pipe([url], decode=False, shuffle=False, cache_dir=tmp_path)
    assert len(list(pipe)) == 4
    assert (process_stats() - before).cache_misses == 1
    assert join_finalizers(timeout=30)
    data = [name for name in os.listdir(tmp_path / "entries") if name.endswith(".data")]
    assert [open(os.path.join(store.entries_dir, name), "rb").read() for name in data] == [body]


@pytest.mark.parametrize("where", ["main", "worker"])
def test_a_process_exiting_right_after_its_epoch_leaves_its_entries_complete(wds_shards, tmp_path, where):
    shards = wds_shards(num_shards=2, samples_per_shard=3, image_size=32)
    job = subprocess.run([sys.executable, "-c", _EXITS_AT_ONCE, where, str(tmp_path), *shards.urls],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr[-2000:]
    assert job.stdout.strip() == "6" and "still being checked" not in job.stderr
    entries = sorted(os.listdir(tmp_path / "entries"))
    assert [name for name in entries if name.endswith(".data")] and not [n for n in entries if n.endswith(".part")]
    store = CacheStore(str(tmp_path), None)
    assert store.usage_bytes() == sum(_sizes(shards.urls)) + 2 * ENTRY_OVERHEAD  # both complete, none left to clean

