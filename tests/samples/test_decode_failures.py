"""``decode_png_pair`` under ``on_error="skip"``/``"warn"``: a missing field is bad data, a shard that decodes
nothing is reported, a pass in which nothing decodes raises."""
import io
import logging
import pickle
import warnings
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image
from torch.utils.data.datapipes.iter import IterableWrapper

from torchdata_s3ext.samples.decode import GIVE_UP_AFTER, decode_png_pair
from torchdata_s3ext.samples.policy import DataErrorWarning, ErrorCounts

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_stray_warnings():
    """Outside ``pytest.warns``, a DataErrorWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataErrorWarning)
        yield


def encoded(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=image_format)
    return out.getvalue()


PNG_IMAGE = encoded(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
PNG_LABEL = encoded(rng.integers(0, 256, (6, 5), dtype=np.uint8))
JPEG_IMAGE = encoded(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), "JPEG")
JPEG_LABEL = encoded(rng.integers(0, 256, (6, 5), dtype=np.uint8), "JPEG")


def shard_url(shard: int) -> str:
    return f"s3://bucket/train/shard-{shard:06d}.tar"


def shard(index: int, count: int, *, jpeg: bool = False) -> List[Dict[str, object]]:
    image, label = (JPEG_IMAGE, JPEG_LABEL) if jpeg else (PNG_IMAGE, PNG_LABEL)
    return [{"__key__": f"{index}/{i:04d}", "__url__": shard_url(index), "image": image, "label": label}
            for i in range(count)]


class Counting:
    """An iterable of samples that counts how many were taken."""

    def __init__(self, samples):
        self.samples, self.taken = samples, 0

    def __iter__(self):
        for sample in self.samples:
            self.taken += 1
            yield sample


def decoder_records(caplog) -> List[str]:
    return [record.getMessage() for record in caplog.records if record.name == "torchdata_s3ext"]


# --- a missing field is bad data; ambiguous keys stay the caller's mistake ---------------------------------


@pytest.mark.parametrize("missing", ["image", "label"])
def test_decode_png_pair_drops_a_sample_lacking_a_field_under_skip_as_incomplete(missing):
    samples = shard(0, 3)
    del samples[1][missing]
    pipe = IterableWrapper(samples).decode_png_pair(on_error="skip")
    assert [s["__key__"] for s in pipe] == ["0/0000", "0/0002"]
    assert pipe.error_counts == ErrorCounts(incomplete_samples=1)


def test_decode_png_pair_warns_of_a_sample_lacking_a_field_under_warn(caplog):
    samples = shard(0, 2)
    del samples[0]["label"]
    pipe = IterableWrapper(samples).decode_png_pair(on_error="warn")
    with caplog.at_level(logging.WARNING, logger="torchdata_s3ext"):
        with pytest.warns(DataErrorWarning, match=r"skipped: sample '0/0000' in 's3://bucket/train/shard-000000.tar': "
                                                  r"label key 'label' must match exactly one field, matches \[\]"):
            assert [s["__key__"] for s in pipe] == ["0/0001"]
    assert pipe.error_counts.incomplete_samples == 1 and len(decoder_records(caplog)) == 1


def test_decode_png_pair_function_returns_none_for_a_sample_lacking_a_field():
    [sample] = shard(0, 1)
    del sample["image"]
    counts = ErrorCounts()
    assert decode_png_pair(sample, on_error="skip", error_counts=counts) is None
    assert counts == ErrorCounts(incomplete_samples=1)
    with pytest.raises(ValueError, match="image key 'image' must match exactly one field, matches \\[\\]"):
        decode_png_pair(sample)


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_decode_png_pair_key_matching_several_fields_raises_under_any_policy(on_error):
    [sample] = shard(0, 1)
    sample = {**sample, "image.png": PNG_IMAGE}
    with pytest.raises(ValueError, match=r"image key 'image' must match exactly one field, matches \['image', "):
        list(IterableWrapper([sample]).decode_png_pair(on_error=on_error))
    # several matches for one key stay a caller's mistake even when the other key matches nothing
    del sample["label"]
    with pytest.raises(ValueError, match=r"image key 'image' must match exactly one field, matches \['image', "):
        decode_png_pair(sample, on_error=on_error)


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_decode_png_pair_both_keys_on_one_field_raises_under_any_policy(on_error):
    [sample] = shard(0, 1)
    with pytest.raises(ValueError, match="image and label keys both match field 'image'"):
        decode_png_pair(sample, label_key="image", on_error=on_error)


@pytest.mark.parametrize("setting, message", [
    ({"decoder": "cv2"}, "unknown PNG decoder 'cv2'"),
    ({"max_pixels": 0}, "max_pixels must be a positive int or None"),
])
def test_decode_png_pair_function_bad_settings_are_caller_errors_under_skip(setting, message):
    [sample] = shard(0, 1)
    with pytest.raises(ValueError, match=message):
        decode_png_pair(sample, on_error="skip", **setting)


# --- a shard that decodes nothing --------------------------------------------------------------------------


def test_decode_png_pair_warns_even_under_skip_of_a_shard_none_of_whose_samples_decoded(caplog):
    samples = shard(0, 3) + shard(1, 4, jpeg=True) + shard(2, 3)
    pipe = IterableWrapper(samples).decode_png_pair(on_error="skip")
    with caplog.at_level(logging.WARNING, logger="torchdata_s3ext"):
        with pytest.warns(DataErrorWarning) as caught:
            decoded = list(pipe)
    assert len(decoded) == 6 and pipe.error_counts == ErrorCounts(corrupt_images=4)
    expected = ("decode_png_pair: all 4 samples of shard 's3://bucket/train/shard-000001.tar' failed to decode and "
                "were skipped; the first: sample '1/0000' in 's3://bucket/train/shard-000001.tar', field 'image': "
                "not a PNG (bad signature) (the data may be JPEG or another format, not PNG)")
    assert [str(warning.message) for warning in caught] == [expected]
    assert decoder_records(caplog) == [expected]


def test_decode_png_pair_reports_a_shard_whose_samples_came_interleaved_with_others():
    bad, good = shard(1, 3, jpeg=True), shard(0, 3)
    interleaved = [sample for pair in zip(bad, good) for sample in pair]  # as after a shuffle buffer
    with pytest.warns(DataErrorWarning, match="all 3 samples of shard 's3://bucket/train/shard-000001.tar'"):
        assert len(list(IterableWrapper(interleaved).decode_png_pair(on_error="skip"))) == 3


def test_decode_png_pair_does_not_report_a_shard_with_one_good_sample():
    samples = shard(0, 3, jpeg=True) + shard(0, 1) + shard(1, 2)
    assert len(list(IterableWrapper(samples).decode_png_pair(on_error="skip"))) == 3


def test_decode_png_pair_reports_the_shard_again_on_each_pass():
    pipe = IterableWrapper(shard(0, 2) + shard(1, 2, jpeg=True)).decode_png_pair(on_error="skip")
    for _ in range(2):
        with pytest.warns(DataErrorWarning, match="all 2 samples of shard 's3://bucket/train/shard-000001.tar'"):
            assert len(list(pipe)) == 2


def test_decode_png_pair_one_bad_shard_first_only_warns_however_long():
    samples = shard(0, GIVE_UP_AFTER + 50, jpeg=True) + shard(1, 2)
    pipe = IterableWrapper(samples).decode_png_pair(on_error="skip")
    with pytest.warns(DataErrorWarning, match=f"all {GIVE_UP_AFTER + 50} samples of shard"):
        assert len(list(pipe)) == 2


# --- a pass in which nothing decodes -----------------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_decode_png_pair_gives_up_when_the_first_100_samples_from_several_shards_all_fail(on_error):
    assert GIVE_UP_AFTER == 100
    source = Counting([sample for index in range(3) for sample in shard(index, 40, jpeg=True)])
    pipe = IterableWrapper(source, deepcopy=False).decode_png_pair(on_error=on_error)
    expected = (r"^decode_png_pair: the first 100 samples, from 3 shards, all failed to decode and nothing decoded; "
                r"the first error: sample '0/0000' in 's3://bucket/train/shard-000000.tar', field 'image': not a PNG "
                r"\(bad signature\) \(the data may be JPEG or another format, not PNG\); pass give_up_after=None to go "
                r"on regardless$")
    with pytest.raises(ValueError, match=expected) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataErrorWarning)  # "warn": one per sample
        list(pipe)
    assert source.taken == 100 and pipe.error_counts == ErrorCounts(corrupt_images=100)
    assert "not a PNG (bad signature)" in str(error.value.__cause__)


def test_decode_png_pair_raises_at_the_end_of_a_short_pass_in_which_nothing_decoded():
    pipe = IterableWrapper(shard(0, 3, jpeg=True)).decode_png_pair(on_error="skip")
    with pytest.raises(ValueError, match=r"^decode_png_pair: all 3 samples of the pass failed to decode and nothing "
                                         r"decoded; the first error: .*not a PNG \(bad signature\)"):
        list(pipe)


def test_decode_png_pair_raises_when_the_keys_match_no_sample():
    pipe = IterableWrapper(shard(0, 2) + shard(1, 2)).decode_png_pair(label_key="seg", on_error="skip")
    with pytest.raises(ValueError, match=r"all 4 samples of the pass failed .* label key 'seg' must match exactly one "
                                         r"field, matches \[\]; .*\(do image_key and label_key name fields the "
                                         r"samples have\?\)"):
        list(pipe)
    assert pipe.error_counts == ErrorCounts(incomplete_samples=4)


def test_decode_png_pair_give_up_after_sets_the_count():
    source = Counting(shard(0, 5, jpeg=True) + shard(1, 5, jpeg=True) + shard(2, 1))
    with pytest.raises(ValueError, match="the first 7 samples, from 2 shards, all failed"):
        list(IterableWrapper(source, deepcopy=False).decode_png_pair(on_error="skip", give_up_after=7))
    assert source.taken == 7


def test_decode_png_pair_give_up_after_none_never_raises_but_still_reports_each_shard():
    samples = shard(0, 60, jpeg=True) + shard(1, 60, jpeg=True)
    pipe = IterableWrapper(samples).decode_png_pair(on_error="skip", give_up_after=None)
    with pytest.warns(DataErrorWarning) as caught:
        assert list(pipe) == []
    assert [str(w.message)[:84] for w in caught] == [
        "decode_png_pair: all 60 samples of shard 's3://bucket/train/shard-000000.tar' failed",
        "decode_png_pair: all 60 samples of shard 's3://bucket/train/shard-000001.tar' failed",
    ]
    assert pipe.error_counts == ErrorCounts(corrupt_images=120)


def test_decode_png_pair_under_raise_raises_the_first_bad_sample_itself():
    with pytest.raises(ValueError, match=r"^sample '0/0000' in 's3://bucket/train/shard-000000.tar', field 'image': "
                                         r"not a PNG \(bad signature\)$"):
        list(IterableWrapper(shard(0, 3, jpeg=True)).decode_png_pair())


def test_decode_png_pair_an_empty_source_is_no_failure():
    assert list(IterableWrapper([]).decode_png_pair(on_error="skip")) == []


@pytest.mark.parametrize("give_up_after", [0, -3, 2.0, "100"])
def test_decode_png_pair_rejects_a_give_up_after_that_is_not_a_positive_int(give_up_after):
    with pytest.raises(ValueError, match="give_up_after must be a positive int or None"):
        IterableWrapper([]).decode_png_pair(give_up_after=give_up_after)


def test_decode_png_pair_settings_survive_pickling():
    pipe = IterableWrapper(shard(0, 1)).decode_png_pair(on_error="skip", max_pixels=1000, give_up_after=None)
    restored = pickle.loads(pickle.dumps(pipe))
    assert (restored.max_pixels, restored.give_up_after, restored.on_error) == (1000, None, "skip")
    assert len(list(restored)) == 1
