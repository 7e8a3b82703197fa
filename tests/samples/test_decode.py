"""``decode_png_pair`` and ``decode_png``: pixels equal PIL's, on both decoders; bad data names URL and key."""
import functools
import io
import pickle
import struct
import tarfile
import zlib
from typing import Dict

import numpy as np
import pytest
import torch
import webdataset
from PIL import Image
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext.samples.decode.optional as optional_libraries
import torchdata_s3ext.samples.decode.png as png_format
import torchdata_s3ext.samples.decode.png_decoders as png_decoders
import torchdata_s3ext.samples.decode.png_stored as png_stored
from torchdata_s3ext import PngPairDecoderIterDataPipe
from torchdata_s3ext.samples.decode import (
    decode_png,
    decode_png_pair,
    fields_matching,
    read_png_header,
)

URL = "s3://bucket/train/shard-000000.tar"
DECODERS = ["libdeflate", "pyspng", "pil"]
MODES = ["image", "label"]
rng = np.random.default_rng(0)


def png(image: Image.Image, **save_options) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **save_options)
    return out.getvalue()


def random_pixels(*shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def reference(data: bytes, mode: str) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB") if mode == "image" else image)


def grey_4bit() -> bytes:
    return png(Image.fromarray(rng.integers(0, 16, size=(9, 13), dtype=np.uint8) * 17), bits=4)


IMAGES = {
    "rgb": lambda: png(Image.fromarray(random_pixels(9, 13, 3))),
    "grey": lambda: png(Image.fromarray(random_pixels(9, 13))),
    "grey-4bit": grey_4bit,
    "bilevel": lambda: png(Image.fromarray(random_pixels(9, 13)).convert("1")),
    "rgba": lambda: png(Image.fromarray(random_pixels(9, 13, 4))),
    "grey-alpha": lambda: png(Image.fromarray(random_pixels(9, 13, 4)).convert("LA")),
    "palette": lambda: png(Image.fromarray(random_pixels(9, 13, 3)).quantize(200)),
    "palette-4bit": lambda: png(Image.fromarray(random_pixels(9, 13, 3)).quantize(16)),
    "palette-transparent": lambda: png(Image.fromarray(random_pixels(9, 13, 3)).quantize(200), transparency=3),
    "rgb-transparent": lambda: png(Image.fromarray(random_pixels(9, 13, 3)), transparency=(1, 2, 3)),
}


def palette_label() -> bytes:
    """Indices 0..4 whose palette colours are far from the indices, so a decoder mapping colours shows."""
    label = Image.fromarray(rng.integers(0, 5, size=(9, 13), dtype=np.uint8), mode="P")
    label.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 90, 255, 255, 0])
    return png(label)


LABELS = {
    "grey": lambda: png(Image.fromarray(random_pixels(9, 13))),
    "palette": palette_label,
}


def sample(**fields) -> Dict[str, object]:
    return {"__key__": "dir/0001", "__url__": URL, **fields}


# --- decode_png --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_decode_png_image_equals_pil_rgb_pixels(kind, decoder):
    data = IMAGES[kind]()
    tensor = decode_png(data, mode="image", decoder=decoder)
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 9, 13) and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), reference(data, "image"))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", sorted(LABELS))
def test_decode_png_label_keeps_grey_values_and_palette_indices(kind, decoder):
    data = LABELS[kind]()
    tensor = decode_png(data, mode="label", decoder=decoder)
    assert tensor.dtype == torch.uint8 and tensor.shape == (9, 13)
    np.testing.assert_array_equal(tensor.numpy(), reference(data, "label"))


def test_decode_png_palette_label_gives_indices_not_colours():
    assert decode_png(palette_label(), mode="label").max() <= 4


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_decode_png_pyspng_and_pil_give_identical_tensors(kind):
    data = IMAGES[kind]()
    assert torch.equal(decode_png(data, mode="image", decoder="pyspng"), decode_png(data, mode="image", decoder="pil"))


@pytest.mark.parametrize("decoder", DECODERS)
def test_decode_png_repeats_grey_to_three_channels(decoder):
    grey = random_pixels(9, 13)
    tensor = decode_png(png(Image.fromarray(grey)), mode="image", decoder=decoder)
    for channel in tensor:
        np.testing.assert_array_equal(channel.numpy(), grey)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", ["rgb", "rgba", "grey-alpha", "grey-4bit"])
def test_decode_png_rejects_labels_that_are_not_8bit_grey_or_palette(kind, decoder):
    with pytest.raises(ValueError, match="a label PNG must be 8-bit greyscale or palette"):
        decode_png(IMAGES[kind](), mode="label", decoder=decoder)


@pytest.mark.parametrize("mode", ["image", "label"])
def test_decode_png_rejects_16bit(mode):
    data = png(Image.fromarray(rng.integers(0, 65536, size=(9, 13), dtype=np.uint16)))
    with pytest.raises(ValueError, match="16-bit PNGs are not supported"):
        decode_png(data, mode=mode)


def flip_byte_in_idat(data: bytes) -> bytes:
    position = data.index(b"IDAT") + 4 + 10
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]


CORRUPT = {
    "empty": lambda data: b"",
    "not-png": lambda data: b"GIF89a" + data[6:],
    "truncated": lambda data: data[: len(data) // 2],
    "flipped-byte": flip_byte_in_idat,
}


@pytest.mark.parametrize("decoder", ["auto", *DECODERS])
@pytest.mark.parametrize("damage", sorted(CORRUPT))
def test_decode_png_raises_value_error_on_corrupt_bytes(damage, decoder):
    with pytest.raises(ValueError, match="PNG"):
        decode_png(CORRUPT[damage](IMAGES["rgb"]()), mode="image", decoder=decoder)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decode_png_keeps_decoder_error_as_cause(decoder):
    data = IMAGES["rgb"]()
    # A well-formed chunk sequence whose compressed pixels stop short: only the decoder can tell.
    idat_start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[idat_start:idat_start + 4])
    short = data[idat_start + 8:idat_start + 8 + length // 2]
    chunk = struct.pack(">I", len(short)) + b"IDAT" + short + struct.pack(">I", zlib.crc32(b"IDAT" + short))
    iend = data[data.index(b"IEND") - 4:]
    with pytest.raises(ValueError, match="corrupt PNG") as error:
        decode_png(data[:idat_start] + chunk + iend, mode="image", decoder=decoder)
    assert error.value.__cause__ is not None


def test_read_png_header_reads_ihdr():
    assert read_png_header(IMAGES["rgb"]()) == (13, 9, 8, 2)


def test_read_png_header_names_chunk_with_bad_crc():
    with pytest.raises(ValueError, match="CRC mismatch in b'IDAT' chunk"):
        read_png_header(flip_byte_in_idat(IMAGES["rgb"]()))


def test_decode_png_auto_falls_back_to_pil_without_pyspng(monkeypatch):
    data = IMAGES["palette"]()
    monkeypatch.setattr(optional_libraries, "pyspng", None)
    np.testing.assert_array_equal(decode_png(data, mode="image").permute(1, 2, 0).numpy(), reference(data, "image"))


class RefusingPyspng:
    """Stands in for a pyspng that refuses a PNG PIL reads (libspng has limits PIL lacks)."""

    @staticmethod
    def load(data: bytes, format: str) -> np.ndarray:
        raise RuntimeError("pyspng: could not decode image: chunk size limit exceeded")


def test_decode_png_auto_retries_with_pil_what_pyspng_refuses(monkeypatch):
    data = IMAGES["rgb"]()
    monkeypatch.setattr(optional_libraries, "pyspng", RefusingPyspng)
    np.testing.assert_array_equal(decode_png(data, mode="image").permute(1, 2, 0).numpy(), reference(data, "image"))
    with pytest.raises(ValueError, match="corrupt PNG: pyspng: could not decode image: chunk size limit"):
        decode_png(data, mode="image", decoder="pyspng")


def test_decode_png_pyspng_decoder_without_pyspng_names_the_package(monkeypatch):
    monkeypatch.setattr(optional_libraries, "pyspng", None)
    with pytest.raises(ModuleNotFoundError, match="pip install pyspng"):
        decode_png(IMAGES["rgb"](), mode="image", decoder="pyspng")


# --- the libdeflate path: libdeflate inflates, libspng unfilters stored blocks ------------------------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))


def handmade_png(pixels: np.ndarray, *, interlaced: bool = False, idat_size: int = 1 << 30, between: bytes = b"",
                 adler_xor: int = 0) -> bytes:
    """8-bit grey ``(H, W)`` or RGB ``(H, W, 3)`` pixels as a PNG with unfiltered rows: Adam7-interlaced if
    asked, the zlib stream cut into IDAT chunks of ``idat_size`` bytes with ``between`` after the first one,
    and the stream's Adler-32 XORed with ``adler_xor`` (chunk CRCs stay right)."""
    height, width = pixels.shape[:2]
    passes = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlaced else [pixels]
    stream = bytearray(zlib.compress(b"".join(b"\0" + row.tobytes() for sub in passes if sub.size for row in sub)))
    stream[-4:] = struct.pack(">I", struct.unpack(">I", stream[-4:])[0] ^ adler_xor)
    idat = [png_chunk(b"IDAT", bytes(stream[i:i + idat_size])) for i in range(0, len(stream), idat_size)]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0 if pixels.ndim == 2 else 2, 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat[0] + between + b"".join(idat[1:])
            + png_chunk(b"IEND", b""))


def outcome(data: bytes, mode: str, decoder: str):
    try:
        return decode_png(data, mode=mode, decoder=decoder).numpy().tolist()
    except ValueError:
        return "ValueError"


@pytest.fixture
def libdeflate_calls(monkeypatch):
    calls = []
    original = png_decoders._decode_with_libdeflate

    def spy(*args):
        calls.append(args[2])
        return original(*args)

    monkeypatch.setattr(png_decoders, "_decode_with_libdeflate", spy)
    return calls


@pytest.mark.parametrize("decoder", ["auto", "libdeflate"])
def test_decode_png_libdeflate_path_decodes_multi_block_multi_chunk_pngs(decoder, monkeypatch, libdeflate_calls):
    # Over 64 KiB of scanlines: several stored blocks; one block per IDAT chunk in the PNG handed to libspng.
    monkeypatch.setattr(png_stored, "_BLOCKS_PER_IDAT", 1)
    image, label = png(Image.fromarray(random_pixels(150, 201, 3))), png(Image.fromarray(random_pixels(300, 257)))
    assert image.count(b"IDAT") > 1 and label.count(b"IDAT") > 1  # PIL's IDAT chunks hold 64 KiB
    np.testing.assert_array_equal(decode_png(image, mode="image", decoder=decoder).permute(1, 2, 0).numpy(),
                                  reference(image, "image"))
    np.testing.assert_array_equal(decode_png(label, mode="label", decoder=decoder).numpy(), reference(label, "label"))
    assert libdeflate_calls == ["image", "label"]


def test_decode_png_auto_takes_the_libdeflate_path(libdeflate_calls):
    decode_png_pair(sample(image=IMAGES["rgb"](), label=LABELS["grey"]()))
    assert libdeflate_calls == ["image", "label"]


def test_stored_png_is_a_valid_png_with_the_same_pixels():
    data = png(Image.fromarray(random_pixels(150, 201, 3)).quantize(100), transparency=3)
    layout = png_format.read_png_layout(data)
    scanlines = zlib.decompress(b"".join(layout.idat))
    stored = png_stored._stored_png(memoryview(data)[:layout.head_end], bytearray(scanlines))
    assert read_png_header(stored) == read_png_header(data)  # every chunk CRC right
    np.testing.assert_array_equal(reference(stored, "image"), reference(data, "image"))


@pytest.mark.parametrize("decoder", ["auto", *DECODERS])
@pytest.mark.parametrize("shape", [(33, 47), (33, 47, 3), (1, 1), (5, 3, 3)])
def test_decode_png_reads_interlaced_pngs(shape, decoder, libdeflate_calls):
    pixels = random_pixels(*shape)
    data = handmade_png(pixels, interlaced=True)
    mode = "label" if len(shape) == 2 else "image"
    tensor = decode_png(data, mode=mode, decoder=decoder)
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy() if mode == "image" else tensor.numpy(), pixels)
    assert libdeflate_calls == []  # Adam7 passes go to pyspng (or PIL) whole


@pytest.mark.parametrize("mode", MODES)
def test_decode_png_libdeflate_equals_pyspng_on_idat_chunks_split_by_another_chunk(mode):
    pixels = random_pixels(20, 30, 3) if mode == "image" else random_pixels(20, 30)
    data = handmade_png(pixels, idat_size=100, between=png_chunk(b"tEXt", b"comment\0between IDATs"))
    assert outcome(data, mode, "libdeflate") == outcome(data, mode, "pyspng")


@pytest.mark.parametrize("mode", MODES)
def test_decode_png_libdeflate_checks_adler32(mode):
    pixels = random_pixels(20, 30, 3) if mode == "image" else random_pixels(20, 30)
    data = handmade_png(pixels, idat_size=100, adler_xor=1)
    read_png_header(data)  # the chunk CRCs are right: only the Adler-32 of the pixel data tells
    with pytest.raises(ValueError, match="corrupt PNG: compressed pixel data") as error:
        decode_png(data, mode=mode, decoder="libdeflate")
    assert error.value.__cause__ is not None
    with pytest.raises(ValueError, match=r"sample 'dir/0001' in 's3://bucket/train/shard-000000.tar', field 'image'"):
        decode_png_pair(sample(image=handmade_png(random_pixels(20, 30, 3), adler_xor=1), label=LABELS["grey"]()),
                        decoder="libdeflate")


@pytest.mark.parametrize("decoder", ["auto", *DECODERS])
def test_decode_png_accepts_any_bytes_like(decoder):
    data = IMAGES["rgb"]()
    expected = decode_png(data, mode="image", decoder=decoder)
    for view in (bytearray(data), memoryview(data)):
        assert torch.equal(decode_png(view, mode="image", decoder=decoder), expected)


def test_decode_png_libdeflate_decoder_without_deflate_names_the_package(monkeypatch):
    monkeypatch.setattr(optional_libraries, "libdeflate", None)
    with pytest.raises(ModuleNotFoundError, match="pip install deflate pyspng"):
        decode_png(IMAGES["rgb"](), mode="image", decoder="libdeflate")


def test_decode_png_auto_without_deflate_uses_pyspng_and_still_checks_crcs(monkeypatch, libdeflate_calls):
    monkeypatch.setattr(optional_libraries, "libdeflate", None)
    for make in IMAGES.values():
        data = make()
        np.testing.assert_array_equal(decode_png(data, mode="image").permute(1, 2, 0).numpy(), reference(data, "image"))
    with pytest.raises(ValueError, match="CRC mismatch in b'IDAT' chunk"):
        decode_png(flip_byte_in_idat(IMAGES["rgb"]()), mode="image")
    assert libdeflate_calls == []


def test_decode_png_rejects_unknown_decoder_and_mode():
    with pytest.raises(ValueError, match="unknown PNG decoder 'cv2'; choose one of auto, libdeflate, pyspng, pil"):
        decode_png(IMAGES["rgb"](), mode="image", decoder="cv2")
    with pytest.raises(ValueError, match="unknown mode 'RGB'"):
        decode_png(IMAGES["rgb"](), mode="RGB")


# --- field matching and decode_png_pair --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, fields, matches",
    [
        ("image", ["image", "label"], ["image"]),
        ("image", ["image.png", "label.png", "imagenet.json"], ["image.png"]),
        ("png", ["png", "cls"], ["png"]),
        ("png", ["seg.png", "cls"], ["seg.png"]),
        ("seg.png", ["x.seg.png", "x.png"], ["x.seg.png"]),
        ("key", ["__key__", "__url__"], []),
    ],
)
def test_fields_matching_takes_key_key_dot_ext_or_dot_key(key, fields, matches):
    assert fields_matching(key, fields) == matches


def test_decode_png_pair_replaces_image_and_label_and_passes_other_fields():
    image, label = IMAGES["rgb"](), LABELS["grey"]()
    decoded = decode_png_pair(sample(**{"image.png": image, "label.png": label, "cls": b"7"}))
    assert decoded["__key__"] == "dir/0001" and decoded["__url__"] == URL and decoded["cls"] == b"7"
    assert decoded["image.png"].shape == (3, 9, 13) and decoded["label.png"].shape == (9, 13)


def test_decode_png_pair_leaves_input_sample_unchanged():
    original = sample(image=IMAGES["rgb"](), label=LABELS["grey"]())
    decode_png_pair(original)
    assert isinstance(original["image"], bytes) and isinstance(original["label"], bytes)


def test_decode_png_pair_ambiguous_key_names_url_key_and_fields():
    ambiguous = sample(**{"image.png": IMAGES["rgb"](), "label.png": LABELS["grey"]()})
    with pytest.raises(ValueError, match=r"'dir/0001' in 's3://bucket/train/shard-000000.tar': image key 'png' "
                                         r"must match exactly one field, matches \['image.png', 'label.png'\]"):
        decode_png_pair(ambiguous, image_key="png", label_key="label")


def test_decode_png_pair_missing_key_names_url_key_and_fields():
    with pytest.raises(ValueError, match=r"label key 'label' must match exactly one field, matches \[\]; "
                                         r"the sample has fields \['image'\]"):
        decode_png_pair(sample(image=IMAGES["rgb"]()))


def test_decode_png_pair_rejects_one_field_for_both_keys():
    with pytest.raises(ValueError, match="image and label keys both match field 'seg.png'"):
        decode_png_pair(sample(**{"seg.png": LABELS["grey"]()}), image_key="seg", label_key="png")


@pytest.mark.parametrize("decoder", ["auto", *DECODERS])
def test_decode_png_pair_corrupt_bytes_error_names_url_and_key(decoder):
    with pytest.raises(ValueError) as error:
        decode_png_pair(sample(image=b"\x89PNG\r\n\x1a\ngarbage", label=LABELS["grey"]()), decoder=decoder)
    assert "s3://bucket/train/shard-000000.tar" in str(error.value) and "'dir/0001'" in str(error.value)
    assert "field 'image'" in str(error.value)
    assert isinstance(error.value.__cause__, ValueError)


def test_decode_png_pair_rgb_label_error_names_url_and_key():
    with pytest.raises(ValueError, match=r"sample 'dir/0001' in 's3://bucket/train/shard-000000.tar', field 'label': "
                                         r"a label PNG must be 8-bit greyscale or palette, not 8-bit RGB"):
        decode_png_pair(sample(image=IMAGES["rgb"](), label=IMAGES["rgb"]()))


def test_decode_png_pair_rejects_non_bytes_field_naming_url_and_key():
    with pytest.raises(TypeError, match=r"sample 'dir/0001' in 's3://.*field 'image': expected PNG bytes, got str"):
        decode_png_pair(sample(image="not bytes", label=LABELS["grey"]()))


# --- the datapipe ------------------------------------------------------------------------------------------


def article_shard(count: int) -> bytes:
    """The article's WebDataset layout (fields ``image`` and ``label``), at 16x16 to stay fast."""
    shard = io.BytesIO()
    with webdataset.TarWriter(shard) as writer:
        for i in range(count):
            writer.write({
                "__key__": str(i),
                "image": png(Image.fromarray(random_pixels(16, 16, 3))),
                "label": png(Image.fromarray(random_pixels(16, 16))),
            })
    return shard.getvalue()


def _open_shard(shard: bytes, url: str):
    return url, io.BytesIO(shard)


def decoded_pipe(shard: bytes, **kwargs) -> PngPairDecoderIterDataPipe:
    opened = IterableWrapper([URL]).map(functools.partial(_open_shard, shard))
    return opened.load_from_tar().group_wds_samples().decode_png_pair(**kwargs)


def test_decode_png_pair_decodes_article_shards_end_to_end():
    shard = article_shard(3)
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        raw = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
    samples = list(decoded_pipe(shard))
    assert [s["__key__"] for s in samples] == ["0", "1", "2"]
    for decoded in samples:
        image, label = raw[f"{decoded['__key__']}.image"], raw[f"{decoded['__key__']}.label"]
        np.testing.assert_array_equal(decoded["image"].permute(1, 2, 0).numpy(), reference(image, "image"))
        np.testing.assert_array_equal(decoded["label"].numpy(), reference(label, "label"))


def test_decode_png_pair_forwards_length():
    assert len(IterableWrapper([sample()] * 3).decode_png_pair()) == 3


def test_decode_png_pair_rejects_unknown_decoder_at_construction():
    with pytest.raises(ValueError, match="unknown PNG decoder 'opencv'"):
        IterableWrapper([]).decode_png_pair(decoder="opencv")


def test_decode_png_pair_survives_pickling():
    dp = decoded_pipe(article_shard(2), decoder="pil")
    restored = pickle.loads(pickle.dumps(dp))
    assert restored.decoder == "pil"
    ours, theirs = list(restored), list(dp)
    assert len(ours) == len(theirs) == 2
    for mine, original in zip(ours, theirs):
        assert torch.equal(mine["image"], original["image"]) and torch.equal(mine["label"], original["label"])


def test_decode_png_pair_restarts_from_the_beginning_after_reset():
    dp = decoded_pipe(article_shard(4))
    everything = [s["__key__"] for s in dp]
    iterator = iter(dp)
    assert [next(iterator)["__key__"] for _ in range(2)] == everything[:2]
    assert [s["__key__"] for s in dp] == everything == ["0", "1", "2", "3"]
