"""ShardWriter on a local folder: its arguments checked at construction, shard sizes within the limit, samples
read back byte-exact by our readers and webdataset's, complete shards only, and the index."""
import itertools
import os
import tarfile

import pytest
import webdataset

from torchdata_s3ext import list_shards, wds_pipe
from torchdata_s3ext.writing import ShardWriter, read_shard_index
from torchdata_s3ext.writing.tar import archive_size, encode_sample


def make_samples(count, size=3000, first=0):
    return [{"__key__": f"sample_{index:05d}", "bin": os.urandom(size + index), "cls": index}
            for index in range(first, first + count)]


def read_back(urls, **options):
    return [{key: value for key, value in sample.items() if key != "__url__"}
            for sample in wds_pipe(urls, decode=False, shuffle=False, backend="local", **options)]


def as_written(samples):
    return [{"__key__": s["__key__"], "bin": s["bin"], "cls": str(s["cls"]).encode()} for s in samples]


@pytest.mark.parametrize("pattern, message", [
    ("shards/shard-{000000..000009}.tar", "braces name a fixed set of shards"),
    ("shards/shard.tar", "needs exactly one %d field"),
    ("shards/shard-%06d-%06d.tar", "needs exactly one %d field"),
    ("shards/shard-%s.tar", "needs exactly one %d field"),
    ("shards/shard-%06d%.tar", "needs exactly one %d field"),
    ("file:///data/shard-%2506d.tar", "needs exactly one %d field"),  # as_uri() of shard-%06d.tar
    ("shards-%03d/shard.tar", "must be in the file name"),
    ("shards/shard-%06d.tgz", "must end in .tar"),
    ("s3://bucket-only-%06d.tar", "needs both a bucket and a key"),
    ("pipe:cat > shard-%06d.tar", "cannot write shards to a pipe"),
])
def test_shard_writer_refuses_a_pattern_it_cannot_number_saying_why(pattern, message):
    with pytest.raises(ValueError, match=message):
        ShardWriter(pattern)


@pytest.mark.parametrize("options, message", [
    ({"max_bytes": 10239}, "max_bytes must be an integer of at least 10240"),
    ({"max_samples": 0}, "max_samples must be None or an integer of at least 1"),
    ({"part_size": 1 << 20}, r"part_size must be an integer from 5242880 \(5 MiB\) to 5 GiB"),
    ({"max_in_flight": 0}, "max_in_flight must be an integer of at least 1"),
    ({"max_bytes": 10_001 * (5 << 20), "part_size": 5 << 20, "pattern": "s3://b/k-%d.tar"}, "more than S3's 10000 parts"),
])
def test_shard_writer_checks_its_limits_at_construction(options, message, tmp_path):
    pattern = options.pop("pattern", str(tmp_path / "shard-%06d.tar"))
    with pytest.raises(ValueError, match=message):
        ShardWriter(pattern, **options)


def test_shard_writer_takes_percent_signs_written_twice_and_config_fields(tmp_path):
    with ShardWriter(str(tmp_path / "100%%" / "shard-%d.tar"), max_attempts=7) as writer:
        writer.write(make_samples(1)[0])
    assert writer.urls == [str(tmp_path / "100%" / "shard-0.tar")] and writer.config.max_attempts == 7


def test_round_trip_is_byte_exact_through_our_reader_and_webdataset(tmp_path):
    samples = make_samples(40)
    with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_bytes=40_000) as writer:
        for sample in samples:
            writer.write(sample)
    assert len(writer.urls) > 3
    assert read_back(writer.urls) == as_written(samples)
    dataset = webdataset.WebDataset(writer.urls, shardshuffle=False, empty_check=False)
    assert [{key: value for key, value in s.items() if key in ("__key__", "bin", "cls")} for s in dataset] == as_written(samples)


def test_shards_stay_within_max_bytes_and_fill_up_to_it(tmp_path):
    samples = make_samples(60, size=2500)
    max_bytes = 30_720
    with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_bytes=max_bytes) as writer:
        for sample in samples:
            writer.write(sample)
    sizes = [os.path.getsize(url) for url in writer.urls]
    assert all(size <= max_bytes for size in sizes)
    sample_sizes = [encode_sample(sample, 0).size for sample in samples]
    start = 0
    for shard in writer.shards[:-1]:  # each shard ended because the next sample would not fit
        taken = sample_sizes[start: start + shard.nsamples + 1]
        assert archive_size(sum(taken)) > max_bytes
        start += shard.nsamples


def test_a_sample_larger_than_max_bytes_gets_a_shard_of_its_own(tmp_path):
    small, large = make_samples(2, size=100), make_samples(1, size=50_000, first=2)
    with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_bytes=20_480) as writer:
        for sample in [small[0], *large, small[1]]:
            writer.write(sample)
    assert [shard.nsamples for shard in writer.shards] == [1, 1, 1]
    assert os.path.getsize(writer.urls[1]) > 20_480 >= max(os.path.getsize(url) for url in writer.urls[::2])
    assert read_back(writer.urls) == as_written([small[0], *large, small[1]])


def test_max_samples_ends_a_shard(tmp_path):
    with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_samples=4) as writer:
        for sample in make_samples(10):
            writer.write(sample)
    assert [shard.nsamples for shard in writer.shards] == [4, 4, 2]


def test_start_shard_and_shared_numbers_name_the_shards(tmp_path):
    numbers = itertools.count(10)
    first = ShardWriter(str(tmp_path / "a-%d.tar"), max_samples=1, shard_numbers=numbers, write_index=False)
    second = ShardWriter(str(tmp_path / "a-%d.tar"), max_samples=1, shard_numbers=numbers, write_index=False)
    for one, two in zip(make_samples(2), make_samples(2, first=2)):
        first.write(one)
        second.write(two)
    first.close(), second.close()
    assert sorted(first.shards_by_number) + sorted(second.shards_by_number) == [10, 12, 11, 13]
    with ShardWriter(str(tmp_path / "b-%03d.tar"), start_shard=5) as writer:
        writer.write(make_samples(1)[0])
    assert writer.urls == [str(tmp_path / "b-005.tar")]


def test_the_index_lists_every_shard_with_its_samples_size_checksum_and_fields(tmp_path):
    import hashlib

    with ShardWriter(f"file://{tmp_path}/shard-%06d.tar", max_samples=3) as writer:
        for sample in make_samples(7):
            writer.write(sample)
    index = read_shard_index(str(tmp_path / "index.json"))
    assert index.urls == [str(tmp_path / f"shard-{n:06d}.tar") for n in range(3)]
    assert index.sample_counts == [3, 3, 1] and index.num_samples == 7
    assert index.sizes == [os.path.getsize(url) for url in index.urls]
    assert [shard.md5sum for shard in index.shards] == [hashlib.md5(open(url, "rb").read()).hexdigest() for url in index.urls]
    assert all(shard.fields == ("bin", "cls") and shard.etag is None for shard in index.shards)
    assert '"url": "shard-000000.tar"' in (tmp_path / "index.json").read_text()  # relative: the folder can move
    assert writer.index.urls == [(tmp_path / f"shard-{n:06d}.tar").as_uri() for n in range(3)]
    assert read_shard_index((tmp_path / "index.json").as_uri()).urls == writer.index.urls


def test_an_exception_mid_shard_leaves_only_complete_shards_and_no_index(tmp_path):
    samples = make_samples(5)
    with pytest.raises(RuntimeError, match="the run stops"):
        with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_samples=2) as writer:
            for sample in samples:
                writer.write(sample)
            raise RuntimeError("the run stops")
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.tar", "shard-000001.tar"]  # no index, no temporary file
    assert read_back(list_shards(str(tmp_path))) == as_written(samples[:4])
    with pytest.raises(ValueError, match="this ShardWriter is failed: it takes no more samples"):
        writer.write(samples[0])


def test_a_bad_sample_is_refused_before_any_of_it_is_written_and_the_writer_goes_on(tmp_path):
    samples = make_samples(3)
    with ShardWriter(str(tmp_path / "shard-%06d.tar")) as writer:
        writer.write(samples[0])
        with pytest.raises(TypeError, match="sample 'bad', field 'cls'"):
            writer.write({"__key__": "bad", "bin": b"x", "cls": 1.5})
        with pytest.raises(ValueError, match="sample key 'sample_00000' twice in a row"):
            writer.write(samples[0])
        for sample in samples[1:]:
            writer.write(sample)
    assert read_back(writer.urls) == as_written(samples)


def test_a_shard_being_written_is_invisible_to_listings_and_has_the_mode_of_a_new_file(tmp_path):
    with ShardWriter(str(tmp_path / "shard-%06d.tar")) as writer:
        writer.write(make_samples(1)[0])
        (partial,) = os.listdir(tmp_path)
        assert partial.startswith(".shard-000000.tar.") and partial.endswith(".part")
        with pytest.raises(ValueError, match="no shards found"):
            list_shards(str(tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(writer.urls[0]).st_mode & 0o777 == 0o666 & ~umask
    with tarfile.open(writer.urls[0]) as tar:
        assert [member.name for member in tar] == ["sample_00000.bin", "sample_00000.cls"]


def test_no_samples_write_no_shard_and_no_index(tmp_path):
    with ShardWriter(str(tmp_path / "shard-%06d.tar")) as writer:
        pass
    assert writer.urls == [] and writer.index is None and os.listdir(tmp_path) == []
