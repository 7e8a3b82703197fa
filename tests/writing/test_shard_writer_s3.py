"""ShardWriter straight to S3 (moto over HTTP): multipart uploads streamed as shards are written, a PutObject for
a shard smaller than a part, every reader backend reading the shards back byte-exact, the index matching what
S3 holds, and memory bounded by the parts in flight."""
import tracemalloc

import pytest
import webdataset

from torchdata_s3ext import wds_pipe
from torchdata_s3ext.s3.client.process import forget_clients
from torchdata_s3ext.writing import ShardWriter, read_shard_index

from writing_samples import MIB, PART_SIZE, as_written, mib_samples, without_url

BACKENDS = ["auto", "boto3", "fsspec", "iopath", "s3fileloader", "awscli", "s3torchconnector"]
# 13 samples of ~1 MiB, 6 to a shard: two shards of two parts each, then one shard of one sample (one PutObject)
SAMPLES = mib_samples(13)


@pytest.fixture
def written(s3_bucket, stored):
    with ShardWriter(f"s3://{s3_bucket}/train/shard-%06d.tar", max_bytes=7 * MIB, part_size=PART_SIZE) as writer:
        for sample in SAMPLES:
            writer.write(sample)
    return writer


def test_shards_are_multipart_uploads_and_a_small_last_shard_is_one_put(written, stored, s3_bucket):
    assert stored.keys() == ["train/index.json", "train/shard-000000.tar", "train/shard-000001.tar", "train/shard-000002.tar"]
    assert [shard.nsamples for shard in written.shards] == [6, 6, 1]
    assert [stored.etag(f"train/shard-{n:06d}.tar").endswith('-2"') for n in range(3)] == [True, True, False]
    assert stored.open_uploads() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_reader_backend_reads_the_shards_back_byte_exact(written, backend):
    samples = without_url(wds_pipe(written.urls, decode=False, shuffle=False, backend=backend))
    assert samples == as_written(SAMPLES)


def test_webdataset_reads_the_shards_back_byte_exact(written, stored, tmp_path):
    paths = []
    for number, url in enumerate(written.urls):
        paths.append(str(tmp_path / f"{number}.tar"))
        (tmp_path / f"{number}.tar").write_bytes(stored.body(url.split("/", 3)[3]))
    dataset = webdataset.WebDataset(paths, shardshuffle=False, empty_check=False)
    assert [{key: s[key] for key in ("__key__", "bin", "cls")} for s in dataset] == as_written(SAMPLES)


def test_the_index_matches_what_s3_holds(written, stored, s3_bucket):
    index = read_shard_index(f"s3://{s3_bucket}/train/index.json")
    keys = [f"train/shard-{n:06d}.tar" for n in range(3)]
    assert index.urls == written.urls == [f"s3://{s3_bucket}/{key}" for key in keys]
    assert index.sample_counts == [6, 6, 1] and index.num_samples == 13
    assert index.sizes == [len(stored.body(key)) for key in keys]
    assert index.etags == [stored.etag(key) for key in keys]
    assert [shard.md5sum for shard in index.shards] == [None] * 3  # the ETag says which version: no MD5 spent
    assert index.shards == written.index.shards


@pytest.mark.parametrize("calculation", ["when_supported", "when_required"])
def test_uploads_with_and_without_checksums_per_part(calculation, s3_bucket, monkeypatch, stored):
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", calculation)
    forget_clients()  # clients read the variable when they are made
    try:
        with ShardWriter(f"s3://{s3_bucket}/c/shard-%06d.tar", max_bytes=7 * MIB, part_size=PART_SIZE) as writer:
            for sample in SAMPLES[:7]:
                writer.write(sample)
    finally:
        forget_clients()
    assert without_url(wds_pipe(writer.urls, decode=False, shuffle=False)) == as_written(SAMPLES[:7])


def _lazy_samples(count):
    """Samples made one at a time, so that the test holds none of them."""
    for index in range(count):
        yield mib_samples(1, first=index)[0]


def test_memory_stays_within_the_parts_in_flight(s3_bucket):
    max_in_flight = 1
    pattern = f"s3://{s3_bucket}/m/shard-%06d.tar"
    with ShardWriter(pattern, part_size=PART_SIZE, write_index=False) as warm_up:  # the client and its models, made
        warm_up.write({"__key__": "warm_up", "txt": "x"})
    tracemalloc.start()
    try:
        with ShardWriter(pattern, max_bytes=30 * MIB, part_size=PART_SIZE, max_in_flight=max_in_flight) as writer:
            for sample in _lazy_samples(60):
                writer.write(sample)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(shard.nsamples for shard in writer.shards) == 60
    # the parts in flight, one waiting for a slot, the samples of the one filling: far below the 60 MiB written
    assert peak < (max_in_flight + 2) * PART_SIZE + 3 * MIB


def test_a_missing_bucket_fails_naming_the_shard_url_and_leaves_nothing(s3_server, s3_bucket, stored):
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-here/shard-000000.tar"):
        with ShardWriter("s3://no-such-bucket-here/shard-%06d.tar", max_bytes=7 * MIB, part_size=PART_SIZE) as writer:
            for sample in SAMPLES:
                writer.write(sample)
    assert writer.urls == []


def test_the_index_goes_beside_the_shards_of_a_pattern_at_the_bucket_root(s3_bucket, stored):
    with ShardWriter(f"s3://{s3_bucket}/shard-%d.tar") as writer:
        writer.write({"__key__": "a", "txt": "one"})
    assert stored.keys() == ["index.json", "shard-0.tar"]
    assert read_shard_index(f"s3://{s3_bucket}/index.json").urls == [f"s3://{s3_bucket}/shard-0.tar"]
    assert stored.body("shard-0.tar")[:5] == b"a.txt"


def test_a_buffer_the_caller_refills_after_write_is_written_as_it_was(s3_bucket):
    buffer = bytearray(b"first" * 1000)
    with ShardWriter(f"s3://{s3_bucket}/r/shard-%06d.tar", part_size=PART_SIZE) as writer:
        writer.write({"__key__": "a", "bin": buffer})
        buffer[:] = b"later" * 1000  # still in the part being filled: the writer kept a copy
        writer.write({"__key__": "b", "bin": memoryview(buffer)})
    samples = without_url(wds_pipe(writer.urls, decode=False, shuffle=False))
    assert [sample["bin"] for sample in samples] == [b"first" * 1000, b"later" * 1000]


def test_an_interrupt_mid_shard_aborts_its_upload_and_keeps_the_closed_shards(s3_bucket, stored):
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(f"s3://{s3_bucket}/i/shard-%06d.tar", max_bytes=7 * MIB, part_size=PART_SIZE) as writer:
            for sample in SAMPLES[:12]:  # the second shard's first part is sent: its upload is open
                writer.write(sample)
            raise KeyboardInterrupt
    assert stored.keys() == ["i/shard-000000.tar"] and stored.open_uploads() == []
    assert without_url(wds_pipe(f"s3://{s3_bucket}/i/", decode=False, shuffle=False)) == as_written(SAMPLES[:6])
