"""``group_wds_samples`` and its pure functions: WebDataset's keys, fields and sample boundaries."""
import functools
import io
import pickle
import tarfile
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest
import webdataset
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data.datapipes.iter import IterableWrapper
from webdataset import tariterators

import torchdata_s3ext.samples.grouping  # noqa: F401  (registers group_wds_samples)
from torchdata_s3ext import WdsSampleGrouperIterDataPipe
from torchdata_s3ext.samples.grouping import group_by_keys, split_member_name
from torchdata_s3ext.samples.foreign import split_inner_path

URL = "s3://bucket/train/shard-000000.tar"


def tar_bytes(members: Sequence[Tuple[str, bytes]]) -> bytes:
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w") as tar:
        for member_name, data in members:
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return shard.getvalue()


def webdataset_tar_bytes(samples: Sequence[Dict[str, object]]) -> bytes:
    shard = io.BytesIO()
    with webdataset.TarWriter(shard) as writer:
        for sample in samples:
            writer.write(sample)
    return shard.getvalue()


def _open_shard(shards: Dict[str, bytes], url: str) -> Tuple[str, io.BytesIO]:
    return url, io.BytesIO(shards[url])


def grouped(shards: Dict[str, bytes], urls: Sequence[str] = (), **kwargs) -> WdsSampleGrouperIterDataPipe:
    """Shards opened lazily, as ``open_s3`` does, so the pipe pickles and can be iterated again."""
    opened = IterableWrapper(list(urls or shards)).map(functools.partial(_open_shard, shards))
    return opened.load_from_tar().group_wds_samples(**kwargs)


def members_of(samples: Sequence[Tuple[str, Dict[str, bytes]]], url: str = URL) -> List[Tuple[str, str, bytes]]:
    return [(url, f"{key}.{field}", data) for key, fields in samples for field, data in fields.items()]


def expected(samples: Sequence[Tuple[str, Dict[str, bytes]]], url: str = URL) -> List[Dict[str, object]]:
    return [{"__key__": key, "__url__": url, **fields} for key, fields in samples]


# --- split_member_name -------------------------------------------------------------------------------------


def test_split_member_name_keeps_directories_in_key():
    assert split_member_name("dir/sub.v1/sample_0001.image.png") == ("dir/sub.v1/sample_0001", "image.png")


def test_split_member_name_splits_at_first_dot_of_file_name():
    assert split_member_name("sample.seg.mask.png") == ("sample", "seg.mask.png")


def test_split_member_name_lowercases_field_not_key():
    assert split_member_name("Dir/Sample.Image.PNG") == ("Dir/Sample", "image.png")


@pytest.mark.parametrize("member_name", ["README", "dir/LICENSE", "a.b/c", ".hidden"])
def test_split_member_name_skips_file_names_without_a_dot(member_name):
    assert split_member_name(member_name) is None


def test_split_member_name_gives_dotfile_in_directory_to_directory_key_like_webdataset():
    assert split_member_name("dir/.hidden") == ("dir/", "hidden")


@pytest.mark.parametrize("member_name", ["__index__", "__meta__/0001.json", "__a.b__"])
def test_split_member_name_skips_webdataset_metadata_members(member_name):
    assert split_member_name(member_name) is None


def test_split_member_name_keeps_trailing_dot_as_empty_field_like_webdataset():
    assert split_member_name("sample.") == ("sample", "")


member_names = st.text(alphabet="aB_./-", min_size=1, max_size=12)


@given(member_names)
def test_split_member_name_agrees_with_webdataset_base_plus_ext(member_name):
    key, field = tariterators.base_plus_ext(member_name)
    ours = split_member_name(member_name)
    if ours is not None:
        assert ours == (key, field.lower())
    else:
        assert key is None or member_name.startswith("__")


# --- split_inner_path --------------------------------------------------------------------------------------


def test_split_inner_path_recovers_s3_url_collapsed_by_normpath():
    assert split_inner_path("s3:/bucket/train/shard-000000.tar/dir/0001.png", URL) == (URL, "dir/0001.png")


@pytest.mark.parametrize(
    "inner_pathname, shard_url, member_name",
    [
        ("/data/x.tar/a.tar/0001.png", "/data/x.tar/a.tar", "0001.png"),
        ("/data/shard.tar.gz/d/0001.png", "/data/shard.tar.gz", "d/0001.png"),
        ("/data/shard.tgz/0001.png", "/data/shard.tgz", "0001.png"),
        ("/data/SHARD.TAR/0001.png", "/data/SHARD.TAR", "0001.png"),
    ],
)
def test_split_inner_path_without_stream_name_splits_after_last_tar(inner_pathname, shard_url, member_name):
    assert split_inner_path(inner_pathname, None) == (shard_url, member_name)


def test_split_inner_path_without_stream_name_or_tar_suffix_raises_naming_path():
    with pytest.raises(ValueError, match=r"cannot tell shard from member in '/data/shard.bin/0001.png'"):
        split_inner_path("/data/shard.bin/0001.png", None)


def test_split_inner_path_rejects_member_outside_shard():
    with pytest.raises(ValueError, match=r"'s3:/bucket/train/evil.png' is outside shard 's3://bucket/train/"):
        split_inner_path("s3:/bucket/train/evil.png", URL)


# --- group_by_keys -----------------------------------------------------------------------------------------


def test_group_by_keys_ends_sample_when_key_changes():
    samples = [("a", {"png": b"1", "cls": b"x"}), ("b", {"png": b"2"}), ("a", {"png": b"3"})]
    assert list(group_by_keys(members_of(samples))) == expected(samples)


def test_group_by_keys_skips_members_without_dot():
    members = [(URL, "README", b"r"), (URL, "a.png", b"1"), (URL, "dir/notes", b"n"), (URL, "a.cls", b"2")]
    assert list(group_by_keys(members)) == [{"__key__": "a", "__url__": URL, "png": b"1", "cls": b"2"}]


def test_group_by_keys_never_spans_shards():
    other = "s3://bucket/train/shard-000001.tar"
    members = [(URL, "a.png", b"1"), (other, "a.cls", b"2")]
    assert list(group_by_keys(members)) == [
        {"__key__": "a", "__url__": URL, "png": b"1"},
        {"__key__": "a", "__url__": other, "cls": b"2"},
    ]


def test_group_by_keys_raises_on_duplicate_field_naming_url_and_key():
    members = [(URL, "d/a.png", b"1"), (URL, "d/a.PNG", b"2")]
    with pytest.raises(ValueError, match=r"duplicate field 'png' in sample 'd/a' in 's3://bucket/train/shard-000000"):
        list(group_by_keys(members))


def test_group_by_keys_raises_on_missing_required_field_naming_url_key_and_field():
    members = [(URL, "a.png", b"1"), (URL, "a.cls", b"2"), (URL, "b.png", b"3")]
    groups = group_by_keys(members, required_fields=("png", "cls"))
    assert next(groups)["__key__"] == "a"
    with pytest.raises(ValueError, match=r"sample 'b' in 's3://bucket/train/shard-000000.tar' lacks .*\['cls'\]"):
        next(groups)


def test_group_by_keys_streams_one_sample_at_a_time():
    pulled = []

    def members() -> Iterator[Tuple[str, str, bytes]]:
        for member in members_of([("a", {"png": b"1", "cls": b"2"}), ("b", {"png": b"3"}), ("c", {"png": b"4"})]):
            pulled.append(member)
            yield member

    groups = group_by_keys(members())
    assert next(groups)["__key__"] == "a"
    assert len(pulled) == 3  # a.png, a.cls and the b.png that ended sample a


keys = st.builds(
    lambda dirs, base: "/".join([*dirs, base]),
    st.lists(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,5}", fullmatch=True), max_size=3),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,5}", fullmatch=True),
)
fields = st.from_regex(r"[a-z0-9]{1,4}(\.[a-z0-9]{1,4}){0,2}", fullmatch=True)
sample_lists = st.lists(
    st.tuples(keys, st.dictionaries(fields, st.binary(max_size=8), min_size=1, max_size=4)),
    max_size=8,
    unique_by=lambda sample: sample[0],
)


@given(sample_lists)
def test_group_by_keys_yields_each_contiguous_sample_once_in_order(samples):
    assert list(group_by_keys(members_of(samples))) == expected(samples)


@settings(max_examples=30, deadline=None)
@given(sample_lists, sample_lists)
def test_group_wds_samples_yields_every_sample_of_every_shard_in_order(first, second):
    urls = [URL, "s3://bucket/train/shard-000001.tar"]
    shards = {url: tar_bytes([(name, data) for _, name, data in members_of(samples, url)])
              for url, samples in zip(urls, (first, second))}
    assert list(grouped(shards)) == expected(first, urls[0]) + expected(second, urls[1])


# Small pools of parts, so that keys repeat, fields collide and odd names (dotfiles, metadata) come up.
# "." and ".." are left out: load_from_tar() normalises them away, webdataset keeps them.
tar_member_names = st.builds(
    lambda dirs, file_name: "/".join([*dirs, file_name]),
    st.lists(st.sampled_from(["d", "d.v1", "D", "_x", "__m__"]), max_size=2),
    st.builds(
        str.__add__,
        st.sampled_from(["a", "A", "b", "__i__", ""]),
        st.sampled_from(["", ".png", ".PNG", ".cls", ".seg.png", "."]),
    ).filter(lambda file_name: file_name not in ("", ".")),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(tar_member_names, max_size=12))
def test_group_wds_samples_gives_webdataset_samples_for_any_member_names(member_names):
    members = [(name, name.encode()) for name in member_names]
    shard = tar_bytes(members)
    files = tariterators.tar_file_expander([{"url": URL, "stream": io.BytesIO(shard)}])
    try:
        theirs = list(tariterators.group_by_keys(files))
    except ValueError:
        with pytest.raises(ValueError, match="duplicate field"):
            list(grouped({URL: shard}))
    else:
        assert list(grouped({URL: shard})) == theirs


# --- the datapipe ------------------------------------------------------------------------------------------


def test_group_wds_samples_keeps_directories_in_key():
    shard = tar_bytes([("dir/sub.v1/sample_0001.image.png", b"i"), ("dir/sub.v1/sample_0001.label.png", b"l")])
    assert list(grouped({URL: shard})) == [
        {"__key__": "dir/sub.v1/sample_0001", "__url__": URL, "image.png": b"i", "label.png": b"l"}
    ]


def test_group_wds_samples_reads_shards_written_by_webdataset_tarwriter():
    samples = [{"__key__": str(i), "image": b"I%d" % i, "label": b"L%d" % i} for i in range(3)]
    shard = webdataset_tar_bytes(samples)
    assert list(grouped({URL: shard})) == [{**sample, "__url__": URL} for sample in samples]


def test_group_wds_samples_accepts_streams_built_as_in_the_readme():
    shard = tar_bytes([("a.png", b"1")])
    dp = IterableWrapper([(URL, io.BytesIO(shard))], deepcopy=False)
    assert list(dp.load_from_tar().group_wds_samples()) == [{"__key__": "a", "__url__": URL, "png": b"1"}]


def _open_file(path: str) -> Tuple[str, io.BufferedReader]:
    return path, open(path, "rb")


def test_group_wds_samples_over_an_opener_of_our_own_takes_url_from_its_pairs(tmp_path):
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(tar_bytes([("d.v2/a.png", b"1"), ("d.v2/a.cls", b"2")]))
    dp = IterableWrapper([str(path)]).map(_open_file).load_from_tar().group_wds_samples()
    assert list(dp) == [{"__key__": "d.v2/a", "__url__": str(path), "png": b"1", "cls": b"2"}]


def test_group_wds_samples_over_foreign_members_takes_url_from_the_tar_path():
    members = [("/data/shard-000000.tar/d.v2/a.png", io.BytesIO(b"1")), ("/data/shard-000000.tar/d.v2/a.cls", io.BytesIO(b"2"))]
    dp = IterableWrapper(members, deepcopy=False).group_wds_samples()
    assert list(dp) == [{"__key__": "d.v2/a", "__url__": "/data/shard-000000.tar", "png": b"1", "cls": b"2"}]


def test_group_wds_samples_separates_two_passes_over_a_one_sample_shard():
    shard = tar_bytes([("a.png", b"1")])
    assert list(grouped({URL: shard}, urls=[URL, URL])) == [{"__key__": "a", "__url__": URL, "png": b"1"}] * 2


def test_group_wds_samples_closes_the_shard_at_its_end():
    shard_stream = io.BytesIO(tar_bytes([("a.png", b"1"), ("b.png", b"2")]))
    samples = IterableWrapper([(URL, shard_stream)], deepcopy=False).load_from_tar().group_wds_samples()
    assert [sample["__key__"] for sample in samples] == ["a", "b"]
    assert shard_stream.closed


def test_group_wds_samples_raises_on_duplicate_field_naming_url_and_key():
    shard = tar_bytes([("d/a.png", b"1"), ("d/a.png", b"2")])
    with pytest.raises(ValueError, match=r"duplicate field 'png' in sample 'd/a' in 's3://bucket/train/shard-000000"):
        list(grouped({URL: shard}))


def test_group_wds_samples_raises_on_missing_required_field_naming_url_key_and_field():
    shard = tar_bytes([("a.png", b"1"), ("a.cls", b"2"), ("b.png", b"3")])
    with pytest.raises(ValueError, match=r"sample 'b' in 's3://bucket/train/shard-000000.tar' lacks .*\['cls'\]"):
        list(grouped({URL: shard}, required_fields=["cls"]))


def test_group_wds_samples_rejects_member_escaping_the_shard():
    shard = tar_bytes([("../evil.png", b"1")])
    with pytest.raises(ValueError, match="is outside shard"):
        list(grouped({URL: shard}))


def test_group_wds_samples_rejects_a_string_as_required_fields():
    with pytest.raises(TypeError, match="required_fields must be a sequence of field names"):
        grouped({}, required_fields="png")


def test_group_wds_samples_has_no_length():
    with pytest.raises(TypeError, match="WdsSampleGrouperIterDataPipe instance doesn't have valid length"):
        len(grouped({URL: tar_bytes([])}))


def _three_shards() -> Dict[str, bytes]:
    return {
        f"s3://bucket/shard-{n:06d}.tar": tar_bytes([(f"{n}/{i}.{field}", b"%d" % i) for i in range(4)
                                                     for field in ("png", "cls")])
        for n in range(3)
    }


def test_group_wds_samples_survives_pickling():
    dp = grouped(_three_shards(), required_fields=["png"])
    restored = pickle.loads(pickle.dumps(dp))
    assert restored.required_fields == ("png",)
    assert list(restored) == list(dp)


def test_group_wds_samples_restarts_from_the_beginning_after_reset():
    dp = grouped(_three_shards())
    everything = list(dp)
    assert len(everything) == 12
    iterator = iter(dp)
    assert [next(iterator) for _ in range(6)] == everything[:6]
    assert list(dp) == everything
