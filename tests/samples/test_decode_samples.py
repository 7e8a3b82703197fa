"""``decode_samples`` and ``decode_sample``: every field by its extension, pixels equal PIL's, bad data named."""
import io
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from torch.utils.data.datapipes.iter import IterableWrapper
from PIL import Image

import torchdata_s3ext.samples.decode.optional as optional_libraries
from torchdata_s3ext import wds_pipe
from torchdata_s3ext import SampleDecoderIterDataPipe
from torchdata_s3ext.samples.decode import decode_jpeg, decode_sample, read_jpeg_header
from torchdata_s3ext.samples.policy import DataErrorWarning, ErrorCounts
from torchdata_s3ext.testing import tar_bytes

URL = "s3://bucket/train/shard-000000.tar"
rng = np.random.default_rng(0)


def encoded(pixels: np.ndarray, image_format: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=image_format, **options)
    return out.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    return encoded(pixels, "JPEG", quality=90)


def pil_pixels(data: bytes, mode: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def sample(key: str = "n01440764_10026", **fields):
    return {"__key__": key, "__url__": URL, **fields}


RGB = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
GREY = rng.integers(0, 256, (24, 40), dtype=np.uint8)


@pytest.mark.parametrize("image_format, extension", [("JPEG", "jpg"), ("JPEG", "jpeg"), ("PNG", "png"),
                                                      ("WEBP", "webp"), ("PPM", "ppm")])
@pytest.mark.parametrize("jpeg_decoder", ["auto", "pil"])
def test_images_decode_to_the_pixels_pil_gives_in_rgb_and_in_grey(image_format, extension, jpeg_decoder):
    data = encoded(RGB, image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    rgb = decode_sample(sample(**{f"image.{extension}": data}), jpeg_decoder=jpeg_decoder)[f"image.{extension}"]
    grey = decode_sample(sample(**{extension: data}), image_mode="L", jpeg_decoder=jpeg_decoder)[extension]
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 24, 40) and rgb.is_contiguous()
    assert grey.shape == (1, 24, 40)
    # simplejpeg and PIL both run libjpeg-turbo's accurate IDCT: exact (the brief allows one level)
    assert np.abs(rgb.permute(1, 2, 0).numpy().astype(int) - pil_pixels(data, "RGB")).max() <= 1
    assert np.abs(grey[0].numpy().astype(int) - pil_pixels(data, "L")).max() <= 1


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_on_simplejpeg_is_pixel_exact_with_pil_for_every_chroma_subsampling(subsampling):
    assert optional_libraries.simplejpeg is not None
    data = encoded(RGB, "JPEG", quality=90, subsampling=subsampling)
    assert np.array_equal(decode_jpeg(data, decoder="simplejpeg"), pil_pixels(data, "RGB"))
    assert np.array_equal(decode_jpeg(data, mode="L", decoder="simplejpeg"), pil_pixels(data, "L"))


def test_a_greyscale_jpeg_decodes_to_rgb_grey_and_as_a_label():
    data = jpeg(GREY)
    decoded = decode_sample(sample(jpg=data, **{"mask.jpg": data}))
    assert np.array_equal(decoded["jpg"].permute(1, 2, 0).numpy(), pil_pixels(data, "RGB"))
    assert decoded["mask.jpg"].shape == (24, 40) and np.array_equal(decoded["mask.jpg"].numpy(), pil_pixels(data, "L"))


def test_label_fields_keep_their_values_as_h_w_and_label_keys_choose_them():
    label = encoded(GREY, "PNG")
    decoded = decode_sample(sample(**{"image.png": encoded(RGB, "PNG"), "label.png": label, "x.seg.png": label}))
    assert decoded["image.png"].shape == (3, 24, 40)
    assert np.array_equal(decoded["label.png"].numpy(), GREY) and np.array_equal(decoded["x.seg.png"].numpy(), GREY)
    as_images = decode_sample(sample(**{"label.png": label}), label_keys=())
    assert as_images["label.png"].shape == (3, 24, 40)
    assert decode_sample(sample(**{"cat.png": label}), label_keys="cat")["cat.png"].shape == (24, 40)


def test_a_colour_label_is_bad_data():
    with pytest.raises(ValueError, match=r"field 'label.jpg': a label JPEG must be greyscale"):
        decode_sample(sample(**{"label.jpg": jpeg(RGB)}))


def test_the_signature_picks_the_decoder_so_a_png_named_jpg_still_decodes():
    data = encoded(RGB, "PNG")
    assert np.array_equal(decode_sample(sample(jpg=data))["jpg"].permute(1, 2, 0).numpy(), RGB)


def test_cls_index_txt_json_npy_round_trip_and_other_fields_stay_bytes():
    array = rng.normal(size=(3, 4)).astype(np.float32)
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    npy, npy_be = io.BytesIO(), io.BytesIO()
    np.save(npy, array)
    np.save(npy_be, big_endian)
    value = {"caption": "ünïcode", "boxes": [[1, 2, 3, 4]]}
    decoded = decode_sample(sample(**{
        "cls": b"207\n", "index": b"12", "txt": "ünïcode".encode(), "json": json.dumps(value).encode(),
        "npy": npy.getvalue(), "be.npy": npy_be.getvalue(), "bin": b"\x00\x01", "pyd": b"\x80\x04N.",
        "already": torch.zeros(2)}))
    assert decoded["cls"] == 207 and decoded["index"] == 12 and decoded["txt"] == "ünïcode"
    assert decoded["json"] == value
    assert torch.equal(decoded["npy"], torch.from_numpy(array))
    assert torch.equal(decoded["be.npy"], torch.arange(6, dtype=torch.int32).reshape(2, 3))
    assert decoded["bin"] == b"\x00\x01" and decoded["pyd"] == b"\x80\x04N."  # nothing unpickles
    assert torch.equal(decoded["already"], torch.zeros(2)) and decoded["__key__"] == "n01440764_10026"


def test_an_npy_of_objects_is_refused_not_unpickled():
    npy = io.BytesIO()
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"field 'npy': .*(?i:pickle)"):
        decode_sample(sample(npy=npy.getvalue()))


def _reversed_text(data: bytes) -> str:
    return data.decode()[::-1]


def test_handlers_add_override_alias_and_disable_extensions():
    fields = {"txt": b"abc", "cls": b"3", "image": encoded(RGB, "PNG"), "jpg": jpeg(RGB), "foo": b"xyz"}
    decoded = decode_sample(sample(**fields), handlers={"txt": _reversed_text, "foo": _reversed_text,
                                                        "image": "png", "JPG": None})
    assert decoded["txt"] == "cba" and decoded["foo"] == "zyx" and decoded["cls"] == 3
    assert np.array_equal(decoded["image"].permute(1, 2, 0).numpy(), RGB)
    assert decoded["jpg"] == fields["jpg"]


def test_handler_mistakes_raise_naming_the_handler():
    with pytest.raises(ValueError, match=r"handlers are keyed by an extension without dots"):
        decode_sample(sample(), handlers={".jpg": None})
    with pytest.raises(ValueError, match=r"handler 'image': 'gif' names no built-in extension"):
        decode_sample(sample(), handlers={"image": "gif"})
    with pytest.raises(TypeError, match=r"handler 'jpg' must be a callable"):
        decode_sample(sample(), handlers={"jpg": 3})
    with pytest.raises(ValueError, match=r"image_mode must be one of 'RGB', 'L'"):
        SampleDecoderIterDataPipe(IterableWrapper([]), image_mode="RGBA")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0, after an APP0 segment) claims ``width`` x ``height``, and no data."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def test_read_jpeg_header_reads_the_frame_after_other_segments():
    assert read_jpeg_header(jpeg_claiming(60000, 50000))[:3] == (60000, 50000, 3)
    assert read_jpeg_header(jpeg(RGB))[:3] == (40, 24, 3)


@pytest.mark.parametrize("jpeg_decoder", ["auto", "simplejpeg", "pil"])
def test_a_jpeg_over_max_pixels_is_refused_on_its_header_before_any_decoder_runs(jpeg_decoder, monkeypatch):
    monkeypatch.setattr(optional_libraries, "simplejpeg", None if jpeg_decoder == "pil" else _Refusing)
    monkeypatch.setattr(Image, "open", _Refusing.decode_jpeg)
    counts = ErrorCounts()
    bomb = sample(jpg=jpeg_claiming(60000, 60000))
    with pytest.raises(ValueError, match=r"sample 'n01440764_10026' in 's3://bucket/train/shard-000000.tar', field "
                                         r"'jpg': JPEG of 60000 x 60000 = 3,600,000,000 pixels is over the limit of "
                                         r"89,478,485 pixels"):
        decode_sample(bomb, jpeg_decoder=jpeg_decoder, error_counts=counts)
    assert counts == ErrorCounts(corrupt_images=1)


def test_max_pixels_applies_to_every_image_format():
    for data in (jpeg(RGB), encoded(RGB, "PNG"), encoded(RGB, "WEBP"), encoded(RGB, "PPM")):
        with pytest.raises(ValueError, match=r"of 40 x 24 = 960 pixels is over the limit of 900 pixels"):
            decode_sample(sample(image=data), handlers={"image": "jpg"}, max_pixels=900)


class _Refusing:
    @staticmethod
    def decode_jpeg(*args, **kwargs):
        raise AssertionError("a decoder ran on a JPEG over the limit")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_max_pixels_none_lets_a_large_header_through_to_the_decoder():
    with pytest.raises(ValueError, match=r"field 'jpg': corrupt JPEG"):
        decode_sample(sample(jpg=jpeg_claiming(12000, 12000)), max_pixels=None)


CORRUPT = jpeg(RGB)[:400]


def _samples_with_a_corrupt_jpeg():
    return [sample("a", jpg=jpeg(RGB), cls=b"0"), sample("b", jpg=CORRUPT, cls=b"1"), sample("c", jpg=jpeg(RGB), cls=b"2")]


def test_on_error_raise_names_url_key_and_field_of_a_corrupt_jpeg():
    pipe = IterableWrapper(_samples_with_a_corrupt_jpeg()).decode_samples()
    with pytest.raises(ValueError, match=r"sample 'b' in 's3://bucket/train/shard-000000.tar', field 'jpg': corrupt JPEG"):
        list(pipe)
    assert pipe.error_counts == ErrorCounts(corrupt_images=1)


def test_on_error_skip_and_warn_drop_the_corrupt_sample_and_count_it():
    skipped = IterableWrapper(_samples_with_a_corrupt_jpeg()).decode_samples(on_error="skip")
    assert [decoded["__key__"] for decoded in skipped] == ["a", "c"]
    assert skipped.error_counts == ErrorCounts(corrupt_images=1)
    warned = IterableWrapper(_samples_with_a_corrupt_jpeg()).decode_samples(on_error="warn")
    with pytest.warns(DataErrorWarning, match=r"skipped: sample 'b' .* field 'jpg': corrupt JPEG"):
        assert [decoded["cls"] for decoded in warned] == [0, 2]
    assert decode_sample(sample(json=b"{bad"), on_error="skip") is None


def test_bad_json_text_and_classes_are_bad_data_naming_the_field():
    for field, data, message in (("json", b"{bad", "Expecting property name"), ("txt", b"\xff", "utf-8"),
                                 ("cls", b"three", "invalid literal")):
        counts = ErrorCounts()
        with pytest.raises(ValueError, match=rf"sample 'k' in '{URL}', field '{field}': .*{message}"):
            decode_sample(sample("k", **{field: data}), error_counts=counts)
        assert counts.corrupt_images == 1


def test_a_shard_that_decodes_nothing_is_warned_of_under_skip():
    samples = [sample("a", jpg=CORRUPT), {**sample("b", jpg=jpeg(RGB)), "__url__": "s3://bucket/other.tar"}]
    with pytest.warns(DataErrorWarning, match=r"decode_samples: all 1 samples of shard '.*shard-000000.tar' failed"):
        assert len(list(IterableWrapper(samples).decode_samples(on_error="skip"))) == 1


def test_the_pipe_pickles_resets_and_has_the_length_of_its_source():
    samples = [sample(str(index), jpg=jpeg(RGB), cls=str(index).encode()) for index in range(6)]
    pipe = IterableWrapper(samples).decode_samples(image_mode="L", handlers={"foo": None})
    restored = pickle.loads(pickle.dumps(pipe))
    assert restored.decoding == pipe.decoding and len(restored) == 6
    iterator = iter(restored)
    assert [next(iterator)["cls"] for _ in range(3)] == [0, 1, 2]
    again = list(restored)
    assert [decoded["cls"] for decoded in again] == list(range(6)) and again[0]["jpg"].shape == (1, 24, 40)
    with pytest.raises(TypeError, match="doesn't have valid length"):
        len(IterableWrapper(samples).decode_samples(on_error="skip"))


def test_a_jpeg_and_cls_shard_through_wds_pipe_decode_samples_over_s3(s3_server, s3_bucket):
    import boto3

    images = {f"n01440764_{index:05d}": rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for index in range(5)}
    shard = tar_bytes((key, {"jpg": jpeg(pixels), "cls": str(index).encode()})
                      for index, (key, pixels) in enumerate(images.items()))
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=s3_bucket, Key="in/shard-000000.tar",
                                                                         Body=shard)
    decoded = list(wds_pipe(f"s3://{s3_bucket}/in/", shuffle=False, decode="samples"))
    assert [item["__key__"] for item in decoded] == list(images)
    for index, item in enumerate(decoded):
        assert item["cls"] == index and item["jpg"].shape == (3, 16, 20)
        expected = pil_pixels(jpeg(images[item["__key__"]]), "RGB")
        assert np.array_equal(item["jpg"].permute(1, 2, 0).numpy(), expected)
    with pytest.raises(ValueError, match=r"decode must be True \(the PNG pair\), 'samples' \(every field\) or False"):
        wds_pipe(f"s3://{s3_bucket}/in/", decode="jpg")
