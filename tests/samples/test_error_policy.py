"""``on_error="raise" | "skip" | "warn"`` for bad data: corrupt PNGs, damaged shards, bad samples; counted, named."""
import io
import logging
import pickle
import tarfile
import warnings
from typing import Dict, List, Sequence, Tuple

import boto3
import numpy as np
import pytest
from PIL import Image
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3, group_wds_samples, decode_png_pair)
from torchdata_s3ext.samples.decode import decode_png_pair
from torchdata_s3ext.pipeline import wds_pipe
from torchdata_s3ext.samples.policy import DataErrorWarning, ErrorCounts, check_on_error
from torchdata_s3ext.samples.grouping import group_by_keys
from torchdata_s3ext.samples.grouping import shard_samples
from torchdata_s3ext.testing import seed_samples, tar_bytes

URL = "s3://bucket/train/shard-000000.tar"
Sample = Tuple[str, Dict[str, bytes]]


@pytest.fixture(autouse=True)
def no_stray_warnings():
    """Outside ``pytest.warns``, a warning fails the test: ``"skip"`` must be silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataErrorWarning)
        yield


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def assert_pixel_exact(decoded: List[Dict[str, object]], samples: Sequence[Sample]) -> None:
    assert [sample["__key__"] for sample in decoded] == [key for key, _ in samples]
    for sample, (_, fields) in zip(decoded, samples):
        assert np.array_equal(sample["image"].permute(1, 2, 0).numpy(), pixels(fields["image"]))
        assert np.array_equal(sample["label"].numpy(), pixels(fields["label"]))


def as_dicts(samples: Sequence[Sample], url: str = URL) -> List[Dict[str, object]]:
    return [{"__key__": key, "__url__": url, **fields} for key, fields in samples]


def cut_inside_member(shard: bytes, member_name: str) -> bytes:
    """The shard cut halfway through ``member_name``'s data, as an interrupted upload would leave it."""
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        member = tar.getmember(member_name)
    return shard[: member.offset_data + member.size // 2]


def put_objects(s3_bucket: str, objects: Dict[str, bytes]) -> List[str]:
    client = boto3.client("s3")
    for key, body in objects.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    return [f"s3://{s3_bucket}/{key}" for key in objects]


# --- the policy itself -------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["ignore", "RAISE", None])
def test_unknown_on_error_is_a_value_error_listing_the_three_values(on_error):
    with pytest.raises(ValueError, match=r"on_error must be one of 'raise', 'skip', 'warn', not "):
        check_on_error(on_error)


@pytest.mark.parametrize(
    "make_pipe",
    [
        lambda on_error: IterableWrapper([]).group_wds_samples(on_error=on_error),
        lambda on_error: IterableWrapper([]).load_wds_shards(on_error=on_error),
        lambda on_error: IterableWrapper([]).decode_png_pair(on_error=on_error),
        lambda on_error: wds_pipe(["s3://bucket/a.tar"], on_error=on_error),
    ],
    ids=["group_wds_samples", "load_wds_shards", "decode_png_pair", "wds_pipe"],
)
def test_every_pipe_rejects_an_unknown_on_error_when_built(make_pipe):
    with pytest.raises(ValueError, match=r"on_error must be one of 'raise', 'skip', 'warn', not 'ignore'"):
        make_pipe("ignore")


def test_error_counts_start_at_zero_and_count_by_kind():
    counts = ErrorCounts()
    counts.add("bad_shards")
    counts.add("corrupt_images")
    counts.add("corrupt_images")
    assert counts.as_dict() == {"bad_shards": 1, "incomplete_samples": 0, "duplicate_fields": 0, "corrupt_images": 2}
    assert counts.total() == 3
    assert pickle.loads(pickle.dumps(counts)) == counts


# --- corrupt PNGs ------------------------------------------------------------------------------------------


def samples_with_a_corrupt_label(count: int = 3, bad_index: int = 1) -> Tuple[List[Sample], List[Sample]]:
    """``(all samples, the good ones)``; sample ``bad_index``'s label PNG is cut in half."""
    samples = list(seed_samples(count, image_size=8))
    key, fields = samples[bad_index]
    samples[bad_index] = (key, {**fields, "label": fields["label"][: len(fields["label"]) // 2]})
    return samples, samples[:bad_index] + samples[bad_index + 1:]


def test_corrupt_png_raises_naming_url_and_key_and_counts_it():
    samples, _ = samples_with_a_corrupt_label()
    pipe = IterableWrapper(as_dicts(samples)).decode_png_pair()
    with pytest.raises(ValueError, match=r"sample 'sample_00000001' in 's3://bucket/train/shard-000000.tar', field 'label'"):
        list(pipe)
    assert pipe.error_counts.corrupt_images == 1


def test_corrupt_png_is_skipped_silently_others_pixel_exact():
    samples, good = samples_with_a_corrupt_label()
    pipe = IterableWrapper(as_dicts(samples)).decode_png_pair(on_error="skip")
    assert_pixel_exact(list(pipe), good)
    assert pipe.error_counts == ErrorCounts(corrupt_images=1)


def test_corrupt_png_warns_and_logs_naming_url_and_key(caplog):
    samples, good = samples_with_a_corrupt_label()
    pipe = IterableWrapper(as_dicts(samples)).decode_png_pair(on_error="warn")
    with caplog.at_level(logging.WARNING, logger="torchdata_s3ext"):
        with pytest.warns(DataErrorWarning, match=r"sample 'sample_00000001' in 's3://bucket/train/shard-000000.tar'"):
            decoded = list(pipe)
    assert_pixel_exact(decoded, good)
    assert pipe.error_counts.corrupt_images == 1
    [record] = [record for record in caplog.records if record.name == "torchdata_s3ext"]
    assert URL in record.getMessage() and "sample_00000001" in record.getMessage()


def test_decode_png_pair_returns_none_for_a_skipped_sample():
    samples, _ = samples_with_a_corrupt_label(count=2, bad_index=0)
    counts = ErrorCounts()
    assert decode_png_pair(as_dicts(samples)[0], on_error="skip", error_counts=counts) is None
    assert counts.corrupt_images == 1


def test_wrong_image_key_is_a_caller_mistake_and_raises_under_skip():
    [sample] = as_dicts(list(seed_samples(1, image_size=8)))
    with pytest.raises(ValueError, match="image key 'photo' must match exactly one field"):
        list(IterableWrapper([sample]).decode_png_pair(image_key="photo", on_error="skip"))


# --- incomplete samples and duplicate fields ---------------------------------------------------------------

MEMBERS = [
    (URL, "a.png", b"A"), (URL, "a.cls", b"1"),
    (URL, "b.png", b"B"),
    (URL, "c.png", b"C"), (URL, "c.png", b"C2"), (URL, "c.cls", b"3"),
    (URL, "d.png", b"D"), (URL, "d.cls", b"4"),
]


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_incomplete_and_duplicate_samples_are_dropped_and_counted(on_error):
    counts = ErrorCounts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = list(group_by_keys(MEMBERS, required_fields=["cls"], on_error=on_error, error_counts=counts))
    assert [sample["__key__"] for sample in samples] == ["a", "d"]
    assert (counts.incomplete_samples, counts.duplicate_fields) == (1, 1)
    messages = [str(warning.message) for warning in caught]
    if on_error == "skip":
        assert messages == []
    else:
        assert len(messages) == 2
        assert f"sample 'b' in '{URL}' lacks required field(s) ['cls']" in messages[0]
        assert f"duplicate field 'png' in sample 'c' in '{URL}'" in messages[1]


def test_incomplete_sample_raises_by_default_and_is_counted():
    counts = ErrorCounts()
    with pytest.raises(ValueError, match=r"sample 'b' in 's3://bucket/train/shard-000000.tar' lacks"):
        list(group_by_keys(MEMBERS, required_fields=["cls"], error_counts=counts))
    assert counts.incomplete_samples == 1


def test_group_wds_samples_skips_incomplete_samples_and_exposes_counts():
    shard = tar_bytes([("a", {"png": b"A", "cls": b"1"}), ("b", {"png": b"B"}), ("c", {"png": b"C", "cls": b"3"})])
    pipe = (
        IterableWrapper([(URL, io.BytesIO(shard))], deepcopy=False)
        .load_from_tar()
        .group_wds_samples(required_fields=["cls"], on_error="skip")
    )
    assert [sample["__key__"] for sample in pipe] == ["a", "c"]
    assert pipe.error_counts.incomplete_samples == 1


# --- damaged shards, in memory -----------------------------------------------------------------------------


def test_truncated_shard_yields_complete_samples_before_the_cut_never_a_partial_one():
    samples = list(seed_samples(4, image_size=8))
    shard = cut_inside_member(tar_bytes(samples), "sample_00000002.label")
    counts = ErrorCounts()
    got = list(shard_samples(URL, io.BytesIO(shard), on_error="skip", error_counts=counts))
    assert got == as_dicts(samples[:2])
    assert counts.bad_shards == 1


def test_truncated_shard_raises_by_default_naming_url_and_last_good_key():
    shard = cut_inside_member(tar_bytes(seed_samples(4, image_size=8)), "sample_00000002.label")
    with pytest.raises(tarfile.ReadError, match=rf"bad shard '{URL}', after sample 'sample_00000001'") as raised:
        list(shard_samples(URL, io.BytesIO(shard)))
    assert isinstance(raised.value.__cause__, tarfile.ReadError)


def test_load_wds_shards_closes_every_stream():
    streams = [io.BytesIO(b"not a tar at all" * 64), io.BytesIO(tar_bytes(seed_samples(1, image_size=8)))]
    pipe = IterableWrapper([(URL, stream) for stream in streams], deepcopy=False).load_wds_shards(on_error="skip")
    assert len(list(pipe)) == 1
    assert all(stream.closed for stream in streams)


# --- damaged shards, from the local S3 server --------------------------------------------------------------


@pytest.fixture
def damaged_shards(s3_bucket):
    """Three shards in S3: one cut inside ``sample_00000002.label``, one not a tar, one whole."""
    samples = list(seed_samples(6, image_size=8))
    urls = put_objects(
        s3_bucket,
        {
            "train/shard-000000.tar": cut_inside_member(tar_bytes(samples[:4]), "sample_00000002.label"),
            "train/shard-000001.tar": b"<Error>this object is not a tar</Error>" * 40,
            "train/shard-000002.tar": tar_bytes(samples[4:]),
        },
    )
    return urls, samples[:2] + samples[4:]


def test_damaged_shards_are_skipped_and_later_shards_still_read(damaged_shards):
    urls, good = damaged_shards
    pipe = IterableWrapper(urls).open_s3().load_wds_shards(on_error="skip")
    got = list(pipe)
    assert [(sample["__url__"], sample["__key__"]) for sample in got] == (
        [(urls[0], key) for key, _ in good[:2]] + [(urls[2], key) for key, _ in good[2:]]
    )
    assert [sample["image"] for sample in got] == [fields["image"] for _, fields in good]
    assert pipe.error_counts.bad_shards == 2


def test_damaged_shards_warn_naming_url_and_last_good_key(damaged_shards):
    urls, _ = damaged_shards
    pipe = IterableWrapper(urls).open_s3().load_wds_shards(on_error="warn")
    with pytest.warns(DataErrorWarning) as caught:
        list(pipe)
    messages = [str(warning.message) for warning in caught if warning.category is DataErrorWarning]
    assert len(messages) == 2
    assert f"bad shard '{urls[0]}', after sample 'sample_00000001'" in messages[0]
    assert f"bad shard '{urls[1]}', before its first sample" in messages[1]


def test_non_tar_object_raises_by_default_naming_url(damaged_shards):
    urls, _ = damaged_shards
    with pytest.raises(tarfile.ReadError, match=rf"bad shard '{urls[1]}', before its first sample"):
        list(IterableWrapper(urls[1:]).open_s3().load_wds_shards())


def test_wds_pipe_skips_damaged_shards_and_corrupt_pngs_pixel_exact(damaged_shards):
    urls, good = damaged_shards
    pipe = wds_pipe(urls, shuffle=False, on_error="skip")
    assert_pixel_exact(list(pipe), good)
    assert pipe.error_counts == ErrorCounts(bad_shards=2)


def test_wds_pipe_raises_by_default_on_a_damaged_shard(damaged_shards):
    urls, _ = damaged_shards
    pipe = wds_pipe(urls, shuffle=False)
    assert pipe.error_counts == ErrorCounts()
    with pytest.raises(tarfile.ReadError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_from_tar's own "Unable to extract files" warning
        list(pipe)


def test_wds_pipe_counts_corrupt_pngs(s3_bucket):
    samples, good = samples_with_a_corrupt_label(count=4, bad_index=2)
    urls = put_objects(s3_bucket, {"train/shard-000000.tar": tar_bytes(samples)})
    pipe = wds_pipe(urls, shuffle=False, on_error="skip")
    assert_pixel_exact(list(pipe), good)
    assert pipe.error_counts == ErrorCounts(corrupt_images=1)


# --- load_wds_shards as a pipe -----------------------------------------------------------------------------


def test_load_wds_shards_survives_pickling_and_restarts_from_the_start(damaged_shards):
    urls, good = damaged_shards
    pipe = pickle.loads(pickle.dumps(IterableWrapper(urls).open_s3().load_wds_shards(on_error="skip")))
    first = iter(pipe)
    next(first)
    assert [sample["__key__"] for sample in pipe] == [key for key, _ in good]


def test_load_wds_shards_has_no_length():
    with pytest.raises(TypeError, match="WdsShardLoaderIterDataPipe instance doesn't have valid length"):
        len(IterableWrapper([]).load_wds_shards())


def test_load_wds_shards_gives_the_samples_load_from_tar_and_group_wds_samples_give():
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w") as tar:
        directory = tarfile.TarInfo("dir/")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for member_name, data in [("./a.png", b"A"), ("dir/README", b"r"), ("dir/b.png", b"B"), ("dir/b.cls", b"2")]:
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pairs = [(URL, io.BytesIO(shard.getvalue()))]
    theirs = list(IterableWrapper(pairs, deepcopy=False).load_from_tar().group_wds_samples())
    pairs = [(URL, io.BytesIO(shard.getvalue()))]
    ours = list(IterableWrapper(pairs, deepcopy=False).load_wds_shards())
    assert ours == theirs == [
        {"__key__": "a", "__url__": URL, "png": b"A"},
        {"__key__": "dir/b", "__url__": URL, "png": b"B", "cls": b"2"},
    ]
