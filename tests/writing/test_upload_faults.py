"""Uploads meeting faults: passing ones (503 SlowDown, a connection cut mid-body, an answer lost after S3 acted)
lose nothing; lasting ones end in an error naming the shard's URL with nothing visible and no upload left
open; a writer killed with SIGKILL leaves only complete shards visible."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from torchdata_s3ext import S3Config, list_shards, wds_pipe
from torchdata_s3ext.testing import S3Proxy, UploadFaultPlan
from torchdata_s3ext.writing import ShardWriter, read_shard_index

from writing_samples import MIB, PART_SIZE, as_written, mib_samples, without_url

SAMPLES = mib_samples(13)  # two shards of two parts, then a one-sample shard sent as one PutObject
ALL = ("put", "part", "create", "complete")

PASSING = {
    "slow_down": UploadFaultPlan(slow_down_every=2, max_faults=4),
    "cut_mid_body": UploadFaultPlan(cut_every=2, cut_after_bytes=100_000, max_faults=4),
    "lost_answer_of_a_part": UploadFaultPlan(lost_answer_every=1, operations=("part",), max_faults=2),
    "lost_answer_of_a_complete": UploadFaultPlan(lost_answer_every=1, operations=("complete",), max_faults=2),
    "lost_answer_of_a_put": UploadFaultPlan(lost_answer_every=1, operations=("put",), max_faults=2),
    "slow_down_of_a_create": UploadFaultPlan(slow_down_every=1, operations=("create",), max_faults=2),
}


@pytest.fixture
def proxy(s3_server):
    started = []

    def start(plan: UploadFaultPlan) -> S3Proxy:
        started.append(S3Proxy(s3_server.endpoint_url, upload_plan=plan).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


def write(pattern, endpoint_url, samples=SAMPLES, max_attempts=4):
    config = S3Config(endpoint_url=endpoint_url, max_attempts=max_attempts, read_timeout=5, connect_timeout=2)
    with ShardWriter(pattern, max_bytes=7 * MIB, part_size=PART_SIZE, config=config) as writer:
        for sample in samples:
            writer.write(sample)
    return writer


def assert_only_whole_later_shards(stored, bucket, prefix):
    """After shard 0 failed: no upload left open, no index; a later shard closed before the error surfaced (the
    writer learns of a part's failure at its next sample) may be stored, but whole."""
    assert stored.open_uploads() == []
    assert set(stored.keys()) <= {f"{prefix}shard-000001.tar", f"{prefix}shard-000002.tar"}
    for key in stored.keys():
        number = int(key[-10:-4])
        shard = without_url(wds_pipe(f"s3://{bucket}/{key}", decode=False, shuffle=False))
        assert shard == as_written(SAMPLES[6 * number: 6 * number + 6])


@pytest.mark.parametrize("fault", PASSING)
def test_a_passing_upload_fault_loses_nothing(fault, proxy, s3_bucket, stored):
    through = proxy(PASSING[fault])
    writer = write(f"s3://{s3_bucket}/train/shard-%06d.tar", through.endpoint_url)
    assert through.upload_faults > 0
    assert without_url(wds_pipe(writer.urls, decode=False, shuffle=False)) == as_written(SAMPLES)
    index = read_shard_index(f"s3://{s3_bucket}/train/index.json")
    assert index.sample_counts == [6, 6, 1] and index.etags == [stored.etag(url.split("/", 3)[3]) for url in index.urls]
    assert stored.open_uploads() == []


@pytest.mark.parametrize("operations", [("part",), ("complete",), ALL])
def test_a_lasting_upload_fault_names_the_shard_and_leaves_nothing_visible(operations, proxy, s3_bucket, stored):
    through = proxy(UploadFaultPlan(slow_down_every=1, operations=operations))
    with pytest.raises(OSError, match=rf"s3://{s3_bucket}/train/shard-000000.tar: gave up after 3 attempts"):
        write(f"s3://{s3_bucket}/train/shard-%06d.tar", through.endpoint_url, max_attempts=3)
    assert_only_whole_later_shards(stored, s3_bucket, "train/")


def test_a_cut_that_lasts_names_the_shard_and_aborts_its_upload(proxy, s3_bucket, stored):
    through = proxy(UploadFaultPlan(cut_every=1, cut_after_bytes=50_000, operations=("part",)))
    with pytest.raises(OSError, match=rf"s3://{s3_bucket}/c/shard-000000.tar: gave up after 2 attempts"):
        write(f"s3://{s3_bucket}/c/shard-%06d.tar", through.endpoint_url, max_attempts=2)
    assert_only_whole_later_shards(stored, s3_bucket, "c/")


def test_a_later_shard_failing_keeps_the_complete_ones_and_writes_no_index(proxy, s3_bucket, stored):
    through = proxy(None)
    config = S3Config(endpoint_url=through.endpoint_url, max_attempts=2)
    with pytest.raises(OSError, match=rf"s3://{s3_bucket}/t/shard-000001.tar: gave up after 2 attempts"):
        with ShardWriter(f"s3://{s3_bucket}/t/shard-%06d.tar", max_samples=6, part_size=PART_SIZE, config=config) as writer:
            for number, sample in enumerate(SAMPLES):
                if number == 6:  # the first shard is complete: from now on, every upload fails
                    deadline = time.monotonic() + 30
                    while "t/shard-000000.tar" not in stored.keys() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    through.upload_plan = UploadFaultPlan(slow_down_every=1)
                writer.write(sample)
    assert stored.keys() == ["t/shard-000000.tar"] and stored.open_uploads() == []
    assert without_url(wds_pipe(f"s3://{s3_bucket}/t/", decode=False, shuffle=False)) == as_written(SAMPLES[:6])


CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from writing_samples import MIB, PART_SIZE, mib_samples
    from torchdata_s3ext.writing import ShardWriter
    with ShardWriter({pattern!r}, max_bytes=7 * MIB, part_size=PART_SIZE) as writer:
        for number in range(1000):
            writer.write(mib_samples(1, first=number)[0])
            print(number, flush=True)
""")


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_writer_killed_mid_way_leaves_only_complete_shards_visible(where, s3_server, s3_bucket, tmp_path, stored):
    pattern = f"s3://{s3_bucket}/k/shard-%06d.tar" if where == "s3" else str(tmp_path / "shard-%06d.tar")
    code = CHILD.format(tests=os.path.dirname(__file__), pattern=pattern)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # killed in the fourth shard's sixth sample, its first part sent
            line = child.stdout.readline()
            if not line or int(line) >= 23:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    urls = list_shards(f"s3://{s3_bucket}/k/" if where == "s3" else str(tmp_path))
    assert 1 <= len(urls) <= 3
    samples = without_url(wds_pipe(urls, decode=False, shuffle=False, backend="auto" if where == "s3" else "local"))
    assert [sample["__key__"] for sample in samples] == [f"sample_{n:05d}" for n in range(6 * len(urls))]
    assert [len(sample["bin"]) for sample in samples] == [MIB - 1000 + n for n in range(6 * len(urls))]
    if where == "s3":
        # left open, invisible: the shard being written, and one closed whose complete had not come yet
        assert "k/index.json" not in stored.keys() and len(stored.open_uploads()) <= 2
    else:
        assert not (tmp_path / "index.json").exists()
