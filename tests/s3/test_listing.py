"""``list_shards``: brace patterns, S3 prefixes (paginated), local folders, lists of specs, and clear errors."""
import concurrent.futures
import os

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torchdata_s3ext.s3.listing import expand_braces, list_shards


def test_list_shards_expands_webdataset_brace_pattern_in_order():
    urls = list_shards("s3://bkt/train/shard-{000000..000002}.tar")
    assert urls == ["s3://bkt/train/shard-000000.tar", "s3://bkt/train/shard-000001.tar", "s3://bkt/train/shard-000002.tar"]


@given(first=st.integers(0, 5000), count=st.integers(1, 300))
def test_expand_braces_gives_every_index_once_sorted(first, count):
    last = first + count - 1
    names = expand_braces(f"shard-{{{first:06d}..{last:06d}}}.tar")
    assert names == sorted(names)
    assert names == [f"shard-{index:06d}.tar" for index in range(first, last + 1)]


def test_list_shards_accepts_a_list_of_specs_in_the_given_order():
    urls = list_shards(["s3://b/val-{0..1}.tar", "s3://b/train-{0..1}.tar"])
    assert urls == ["s3://b/val-0.tar", "s3://b/val-1.tar", "s3://b/train-0.tar", "s3://b/train-1.tar"]


def test_list_shards_rejects_a_shard_listed_twice():
    with pytest.raises(ValueError, match=r"shard 's3://b/a-1.tar' is listed twice"):
        list_shards(["s3://b/a-{0..1}.tar", "s3://b/a-{1..2}.tar"])


def test_list_shards_rejects_an_empty_list_of_specs():
    with pytest.raises(ValueError, match=r"no shards found for \[\]"):
        list_shards([])


def test_list_shards_lists_a_local_folder_sorted_and_filtered(tmp_path):
    for name in ("b.tar", "a.tar", "notes.txt", "c.tar.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert list_shards(str(tmp_path)) == [os.path.join(str(tmp_path), "a.tar"), os.path.join(str(tmp_path), "b.tar")]
    assert list_shards(f"file://{tmp_path}", suffix=".txt") == [os.path.join(str(tmp_path), "notes.txt")]


def test_list_shards_names_an_empty_local_folder(tmp_path):
    with pytest.raises(ValueError, match=rf"no shards found for '{tmp_path}'"):
        list_shards(str(tmp_path))


def test_list_shards_lists_an_s3_prefix_past_one_page(s3_server, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    keys = [f"train/shard-{index:06d}.tar" for index in range(1003)] + ["train/readme.txt", "other/shard-000000.tar"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=s3_bucket, Key=key, Body=b""), keys))
    urls = list_shards(f"s3://{s3_bucket}/train/")
    assert urls == [f"s3://{s3_bucket}/train/shard-{index:06d}.tar" for index in range(1003)]


def test_list_shards_names_an_empty_s3_prefix(s3_bucket):
    with pytest.raises(ValueError, match=rf"no shards found for 's3://{s3_bucket}/nothing/'"):
        list_shards(f"s3://{s3_bucket}/nothing/")


def test_list_shards_reports_a_missing_bucket_with_its_url(s3_server):
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        list_shards("s3://no-such-bucket-here/train/")


def test_list_shards_keeps_a_single_s3_url_as_is():
    assert list_shards("s3://bkt/train/shard-000007.tar") == ["s3://bkt/train/shard-000007.tar"]


def test_list_shards_takes_s3config_fields_as_keywords(s3_server, s3_bucket, monkeypatch):
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=s3_bucket, Key="train/shard-000000.tar", Body=b"")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert list_shards(f"s3://{s3_bucket}/train/", endpoint_url=s3_server.endpoint_url, max_attempts=1) == [
        f"s3://{s3_bucket}/train/shard-000000.tar"
    ]


def test_list_shards_rejects_an_unknown_keyword_listing_the_fields():
    with pytest.raises(TypeError, match=r"unknown S3Config field 'endpoint'; valid fields: endpoint_url, region, profile"):
        list_shards("s3://bkt/train/shard-{0..1}.tar", endpoint="http://127.0.0.1:9")


def _put_keys(s3_server, bucket, keys):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"")


def test_list_shards_takes_a_prefix_as_a_folder_never_as_the_start_of_other_names(s3_server, s3_bucket):
    _put_keys(s3_server, s3_bucket, ["train/a.tar", "train/sub/b.tar", "trainval/c.tar", "train.tar.bak"])
    expected = [f"s3://{s3_bucket}/train/a.tar", f"s3://{s3_bucket}/train/sub/b.tar"]
    assert list_shards(f"s3://{s3_bucket}/train") == expected
    assert list_shards(f"s3://{s3_bucket}/train/") == expected


def test_list_shards_lists_compressed_and_upper_case_shards_by_default(s3_server, s3_bucket):
    keys = ["d/a.tar.gz", "d/b.TGZ", "d/c.TAR", "d/e.tar.xz", "d/notes.txt"]
    _put_keys(s3_server, s3_bucket, keys)
    assert list_shards(f"s3://{s3_bucket}/d") == [f"s3://{s3_bucket}/{key}" for key in keys[:4]]


def test_list_shards_reports_shards_of_another_suffix_it_skips(s3_server, s3_bucket):
    _put_keys(s3_server, s3_bucket, ["d/a.tar", "d/b.tar.gz", "d/c.tgz"])
    with pytest.warns(UserWarning, match=r"skipped 2 shard-like names not ending in \.tar .*pass suffix="):
        assert list_shards(f"s3://{s3_bucket}/d", suffix=".tar") == [f"s3://{s3_bucket}/d/a.tar"]


def test_list_shards_matches_glob_patterns_within_a_segment_and_across_with_two_stars(s3_server, s3_bucket):
    _put_keys(s3_server, s3_bucket, ["t/shard-1.tar", "t/sub/shard-2.tar", "t/x.tar", "tv/shard-3.tar"])
    assert list_shards(f"s3://{s3_bucket}/t/shard-*.tar") == [f"s3://{s3_bucket}/t/shard-1.tar"]
    assert list_shards(f"s3://{s3_bucket}/t/**shard-?.tar") == [
        f"s3://{s3_bucket}/t/shard-1.tar", f"s3://{s3_bucket}/t/sub/shard-2.tar"]
    assert list_shards(f"s3://{s3_bucket}/t*/shard-[13].tar") == [
        f"s3://{s3_bucket}/t/shard-1.tar", f"s3://{s3_bucket}/tv/shard-3.tar"]


def test_list_shards_judges_local_paths_by_the_same_rules(tmp_path):
    for name in ("train/a.tar", "train/sub/b.TAR", "trainval/c.tar", "train/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    train = str(tmp_path / "train")
    assert list_shards(train) == [os.path.join(train, "a.tar"), os.path.join(train, "sub", "b.TAR")]
    assert list_shards(str(tmp_path / "train" / "*.tar")) == [os.path.join(train, "a.tar")]
    missing = str(tmp_path / "missing-shard.tar")
    assert list_shards(missing) == [missing]  # a single shard is not checked, on S3 or here


def test_list_shards_rejects_an_empty_suffix():
    with pytest.raises(ValueError, match="suffix must be a non-empty string"):
        list_shards("s3://bkt/train/", suffix="")
