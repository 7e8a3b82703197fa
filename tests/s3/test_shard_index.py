"""read_shard_index: webdataset's wids shape, URLs resolved against the index's folder, and every problem an
error naming the index's URL (and the entry at fault)."""
import json

import pytest

from torchdata_s3ext.writing import ShardIndex, ShardRecord, read_shard_index
from torchdata_s3ext.s3.shard_index import parse_shard_index
from torchdata_s3ext.writing.index import write_shard_index
from torchdata_s3ext import S3Config

URL = "s3://bkt/train/index.json"


def document(*entries, **top):
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": list(entries), **top}


def test_relative_urls_resolve_against_the_index_folder_and_absolute_ones_stay():
    index = parse_shard_index(URL, document(
        {"url": "shard-000000.tar", "nsamples": 3}, {"url": "sub/shard-000001.tar", "nsamples": 0},
        {"url": "s3://other/x.tar", "nsamples": 1}, {"url": "/data/y.tar", "nsamples": 2}))
    assert index.urls == ["s3://bkt/train/shard-000000.tar", "s3://bkt/train/sub/shard-000001.tar", "s3://other/x.tar",
                          "/data/y.tar"]
    assert index.sample_counts == [3, 0, 1, 2] and index.num_samples == 6 and index.sizes == [None] * 4


def test_a_base_moves_relative_urls_as_wids_does():
    index = parse_shard_index(URL, document({"url": "a.tar", "nsamples": 1}, base="s3://mirror/train"))
    assert index.urls == ["s3://mirror/train/a.tar"]


def test_an_index_of_widsindex_create_without_our_extras_reads():
    index = parse_shard_index("data/index.json", document(
        {"url": "a.tar", "nsamples": 10, "filesize": 20480, "md5sum": "0" * 32}, name="ds"))
    assert index.shards == (ShardRecord("data/a.tar", 10, 20480, None, "0" * 32, ()),)


@pytest.mark.parametrize("doc, problem", [
    ([], "the document must be a JSON object, got list"),
    (document({"url": "a.tar", "nsamples": 1}, wids_version=2), "expected __kind__ 'wids-shard-index-v1' and wids_version 1"),
    (document({"url": "a.tar", "nsamples": 1}, __kind__="other"), "expected __kind__"),
    (document({"url": "a.tar", "nsamples": 1}, datasets=[{"source_url": "x"}]), "sub-datasets"),
    (document(), "shardlist must be a non-empty list"),
    (document("a.tar"), r"shardlist\[0\]: an entry must be an object"),
    (document({"nsamples": 1}), r"shardlist\[0\]: url must be a non-empty string"),
    (document({"url": "a.tar", "nsamples": -1}), r"shardlist\[0\] \(a.tar\): nsamples must be an integer >= 0"),
    (document({"url": "a.tar", "nsamples": True}), r"nsamples must be an integer >= 0, got True"),
    (document({"url": "a.tar", "nsamples": 1}, {"url": "b.tar", "nsamples": 1, "filesize": "9"}), r"shardlist\[1\] \(b.tar\): filesize is '9'"),
    (document({"url": "a.tar", "nsamples": 1, "etag": ""}), "etag is ''"),
    (document({"url": "a.tar", "nsamples": 1, "md5sum": "xyz"}), "md5sum is 'xyz'"),
    (document({"url": "a.tar", "nsamples": 1, "fields": "jpg"}), "fields must be a list of strings"),
    (document({"url": "a.tar", "nsamples": 1}, {"url": "s3://bkt/train/a.tar", "nsamples": 2}), "shard s3://bkt/train/a.tar is listed twice"),
])
def test_a_document_that_is_no_shard_index_is_an_error_naming_the_index(doc, problem):
    with pytest.raises(ValueError, match=rf"^{URL}: not a valid shard index: .*{problem}"):
        parse_shard_index(URL, doc)


def test_read_shard_index_names_the_url_of_a_missing_or_broken_index(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_shard_index(str(tmp_path / "index.json"))
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match=rf"{tmp_path}/index.json: not a JSON shard index"):
        read_shard_index(str(tmp_path / "index.json"))
    with pytest.raises(ValueError, match="not a pipe: URL"):
        read_shard_index("pipe:cat index.json")


def test_read_shard_index_on_s3_names_the_url_of_a_missing_index(s3_server, s3_bucket):
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/none/index.json"):
        read_shard_index(f"s3://{s3_bucket}/none/index.json")


def test_write_then_read_round_trips_every_field(s3_server, s3_bucket):
    shards = [ShardRecord(f"s3://{s3_bucket}/d/shard-{n}.tar", n, 10240 * (n + 1), f'"etag{n}"', f"{n:032x}", ("cls", "jpg"))
              for n in range(3)]
    written = write_shard_index(f"s3://{s3_bucket}/d/index.json", shards, S3Config().resolved())
    assert read_shard_index(f"s3://{s3_bucket}/d/index.json") == written == ShardIndex(written.url, tuple(shards))


def test_check_names_the_shard_whose_size_or_etag_differs_from_the_index():
    index = parse_shard_index(URL, document({"url": "a.tar", "nsamples": 1, "filesize": 10240, "etag": '"e1"'}))
    index.check("s3://bkt/train/a.tar", 10240, '"e1"')
    index.check("s3://bkt/train/a.tar", 10240)  # no ETag to compare: the size alone
    with pytest.raises(OSError, match=r"the shard has 20480 bytes, ETag \"e1\"; the index .* says 10240") as raised:
        index.check("s3://bkt/train/a.tar", 20480, '"e1"')
    assert raised.value.filename == "s3://bkt/train/a.tar"
    with pytest.raises(OSError, match="rewritten since it was indexed"):
        index.check("s3://bkt/train/a.tar", 10240, '"e2"')
    with pytest.raises(ValueError, match="s3://bkt/train/b.tar is not a shard of the index"):
        index.check("s3://bkt/train/b.tar", 10240)


def test_the_written_document_has_one_shard_per_line(tmp_path):
    write_shard_index(str(tmp_path / "index.json"), [ShardRecord(str(tmp_path / f"{n}.tar"), 1, 10240) for n in range(3)],
                      S3Config())
    lines = (tmp_path / "index.json").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[1].rstrip(",")) == {"url": "0.tar", "nsamples": 1, "filesize": 10240}


def test_webdatasets_wids_reads_the_index_shardwriter_writes(tmp_path, monkeypatch):
    wids = pytest.importorskip("wids", reason="webdataset's indexed reader: pip install wids")
    from torchdata_s3ext.writing import ShardWriter

    monkeypatch.setenv("WIDS_CACHE", str(tmp_path / "cache"))
    with ShardWriter(str(tmp_path / "shard-%06d.tar"), max_samples=3) as writer:
        for index in range(7):
            writer.write({"__key__": f"s{index}", "txt": f"text {index}", "cls": index})
    dataset = wids.ShardListDataset(str(tmp_path / "index.json"), transformations=[])
    assert len(dataset) == 7  # from the index alone
    sample = dataset[4]  # in the second shard
    assert sample["__key__"] == "s4" and sample[".txt"].read() == b"text 4" and sample[".cls"].read() == b"4"
