"""Decompression bombs and memory: the pixel limit fires on the header before any buffer is made, the deflate
package is never given a size it would cut to 32 bits, and running out of memory is never a "corrupt PNG"."""
import struct
import tracemalloc
import types
import zlib

import numpy as np
import pytest
from torch.utils.data.datapipes.iter import IterableWrapper

import torchdata_s3ext.samples.decode.optional as optional_libraries
import torchdata_s3ext.samples.decode.png_decoders as png_decoders
import torchdata_s3ext.samples.decode.png_stored as png_stored
from torchdata_s3ext.samples.decode import MAX_PIXELS, decode_png, decode_png_pair
from torchdata_s3ext.samples.decode.png import read_png_layout
from torchdata_s3ext.samples.policy import ErrorCounts

URL = "s3://bucket/train/shard-000000.tar"
DECODERS = ["auto", "libdeflate", "pyspng", "pil"]


def png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))


def bomb(width: int, height: int, *, color_type: int = 2, rows: int = 4) -> bytes:
    """A PNG whose IHDR claims ``width x height`` 8-bit pixels and whose pixel data is ``rows`` rows of zeros:
    a few hundred bytes, every CRC right, truncated only for a decoder that reads the data."""
    channels = {0: 1, 2: 3}[color_type]
    stream = zlib.compress(b"".join(b"\0" + bytes(width * channels) for _ in range(rows)), 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def grey_png(height: int = 5, width: int = 7) -> bytes:
    rows = b"".join(b"\0" + bytes(range(width)) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


@pytest.fixture
def decoder_calls(monkeypatch):
    """The calls that would allocate pixels: libdeflate's inflate, pyspng's load (whose buffers tracemalloc
    does not see) and PIL's open, recorded by name and passed on."""
    calls = []

    def recorded(name, function):
        def call(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return call

    libdeflate, pyspng = optional_libraries.libdeflate, optional_libraries.pyspng
    monkeypatch.setattr(optional_libraries, "libdeflate", types.SimpleNamespace(
        crc32=libdeflate.crc32, adler32=libdeflate.adler32,
        zlib_decompress=recorded("libdeflate", libdeflate.zlib_decompress)))
    monkeypatch.setattr(optional_libraries, "pyspng", types.SimpleNamespace(load=recorded("pyspng", pyspng.load)))
    monkeypatch.setattr(png_decoders.Image, "open", recorded("pil", png_decoders.Image.open))
    return calls


def peak_traced_bytes(function) -> int:
    """The most bytes Python, numpy and bytearray allocations held at once while ``function`` ran."""
    tracemalloc.start()
    try:
        function()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def sample(**fields):
    return {"__key__": "dir/0001", "__url__": URL, **fields}


# --- the pixel limit ---------------------------------------------------------------------------------------


def test_max_pixels_default_is_pils_default_limit():
    assert MAX_PIXELS == 89_478_485


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("size", [(16000, 16000), (60000, 60000), (9460, 9460)])
def test_decode_png_refuses_a_bomb_over_the_default_limit_before_allocating(size, decoder, decoder_calls):
    data = bomb(*size)
    assert len(data) < 2000
    width, height = size

    def decode():
        with pytest.raises(ValueError, match=rf"PNG of {width} x {height} = {width * height:,} pixels is over the "
                                             rf"limit of 89,478,485 pixels; pass a larger max_pixels"):
            decode_png(data, mode="image", decoder=decoder)

    assert peak_traced_bytes(decode) < 1 << 20 and decoder_calls == []


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("mode", ["image", "label"])
def test_decode_png_max_pixels_is_checked_before_any_decoder_allocates(mode, decoder, decoder_calls):
    # 2048 x 2048: 12 MiB of RGB, 4 MiB of grey, a few KiB of PNG; one pixel over a limit set for it.
    data = bomb(2048, 2048, color_type=2 if mode == "image" else 0)

    def decode():
        with pytest.raises(ValueError, match="over the limit of 4,194,303 pixels"):
            decode_png(data, mode=mode, decoder=decoder, max_pixels=2048 * 2048 - 1)

    assert peak_traced_bytes(decode) < 1 << 20 and decoder_calls == []


@pytest.mark.parametrize("decoder", DECODERS)
def test_decode_png_decodes_at_the_limit_and_without_one(decoder, decoder_calls):
    data = grey_png(5, 7)
    expected = decode_png(data, mode="label", decoder=decoder)
    assert torch_equal(decode_png(data, mode="label", decoder=decoder, max_pixels=35), expected)
    assert torch_equal(decode_png(data, mode="label", decoder=decoder, max_pixels=None), expected)
    calls = len(decoder_calls)
    assert calls >= 3  # the spies see the decoders' calls
    with pytest.raises(ValueError, match="PNG of 7 x 5 = 35 pixels is over the limit of 34 pixels"):
        decode_png(data, mode="label", decoder=decoder, max_pixels=34)
    assert len(decoder_calls) == calls


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


@pytest.mark.parametrize("max_pixels", [0, -1, 1.5, "100", True])
def test_decode_png_rejects_a_max_pixels_that_is_not_a_positive_int(max_pixels):
    with pytest.raises(ValueError, match="max_pixels must be a positive int or None"):
        decode_png(grey_png(), mode="label", max_pixels=max_pixels)
    with pytest.raises(ValueError, match="max_pixels must be a positive int or None"):
        IterableWrapper([]).decode_png_pair(max_pixels=max_pixels)


def test_decode_png_pair_counts_a_bomb_as_a_corrupt_image_naming_sample_field_size_and_limit():
    bombed = sample(image=bomb(16000, 16000), label=grey_png())
    with pytest.raises(ValueError, match=r"sample 'dir/0001' in 's3://bucket/train/shard-000000.tar', field 'image': "
                                         r"PNG of 16000 x 16000 = 256,000,000 pixels is over the limit of "
                                         r"89,478,485 pixels; pass a larger max_pixels \(or max_pixels=None"):
        decode_png_pair(bombed)
    counts = ErrorCounts()
    assert decode_png_pair(bombed, on_error="skip", error_counts=counts) is None
    assert counts == ErrorCounts(corrupt_images=1)
    small = sample(image=grey_png(), label=grey_png())
    assert decode_png_pair(small, max_pixels=35)["label"].shape == (5, 7)
    assert decode_png_pair(small, max_pixels=34, on_error="skip") is None


def test_decode_png_pair_pipe_skips_bombs_and_keeps_the_rest(decoder_calls):
    samples = [sample(image=grey_png(), label=grey_png()),
               sample(image=grey_png(), label=bomb(9500, 9500, color_type=0))]
    samples[1]["__key__"] = "dir/0002"
    pipe = IterableWrapper(samples).decode_png_pair(on_error="skip")
    keys = []
    assert peak_traced_bytes(lambda: keys.extend(s["__key__"] for s in pipe)) < 1 << 20
    assert keys == ["dir/0001"]
    assert decoder_calls == ["libdeflate", "pyspng"] * 3  # the three small PNGs, not the bomb
    assert pipe.error_counts == ErrorCounts(corrupt_images=1)
    samples[1]["label"] = bomb(3000, 3000, color_type=0)
    pipe = IterableWrapper(samples).decode_png_pair(max_pixels=None, decoder="pyspng", on_error="skip")
    assert [s["__key__"] for s in pipe] == ["dir/0001"]  # no limit: decoded (and found truncated) instead
    assert pipe.max_pixels is None


def test_decode_png_pil_reports_its_own_limit_as_a_limit_not_as_corrupt():
    with pytest.raises(ValueError, match=r"PNG over PIL's pixel limit: .* \(raise PIL.Image.MAX_IMAGE_PIXELS\)"):
        decode_png(bomb(16000, 16000), mode="image", decoder="pil", max_pixels=None)


# --- the 32-bit size of the deflate package ----------------------------------------------------------------


class RecordingDeflate:
    """Stands in for the deflate package, recording the sizes it is asked to inflate to."""

    def __init__(self):
        self.sizes = []
        self.crc32, self.adler32 = zlib.crc32, zlib.adler32

    def zlib_decompress(self, data, size):
        self.sizes.append(size)
        return bytearray(zlib.decompress(data))


class RecordingPyspng:
    def __init__(self):
        self.calls = 0

    def load(self, data, format):
        self.calls += 1
        raise RuntimeError("pyspng: could not decode image: IDAT stream too short")


def test_stored_copy_refuses_pixel_data_over_32_bits_before_calling_deflate(monkeypatch):
    recording = RecordingDeflate()
    monkeypatch.setattr(optional_libraries, "libdeflate", recording)
    layout = read_png_layout(bomb(60000, 60000))  # 10.8 GB of scanlines, 2.4 GB once cut to 32 bits
    assert not png_stored.fits_stored_path(layout.header)
    with pytest.raises(ValueError, match="PNG pixel data of 10,800,060,000 bytes is over the deflate package's"):
        png_stored.stored_copy(bomb(60000, 60000), layout)
    assert recording.sizes == []


def test_stored_copy_path_takes_pixel_data_up_to_32_bits():
    assert png_stored.fits_stored_path(read_png_layout(bomb(37837, 37837)).header)  # 4,294,967,291 bytes
    assert not png_stored.fits_stored_path(read_png_layout(bomb(37838, 37838)).header)


def test_decode_png_auto_sends_pixel_data_over_32_bits_to_pyspng_then_pil(monkeypatch):
    recording, pyspng = RecordingDeflate(), RecordingPyspng()
    monkeypatch.setattr(optional_libraries, "libdeflate", recording)
    monkeypatch.setattr(optional_libraries, "pyspng", pyspng)
    monkeypatch.setattr(png_decoders, "_decode_with_pil", lambda data, mode: np.zeros((1, 1, 3), np.uint8))
    assert decode_png(bomb(60000, 60000), mode="image", max_pixels=None).shape == (3, 1, 1)
    assert recording.sizes == [] and pyspng.calls == 1


def test_decode_png_libdeflate_with_pixel_data_over_32_bits_is_pyspngs(monkeypatch):
    recording, pyspng = RecordingDeflate(), RecordingPyspng()
    monkeypatch.setattr(optional_libraries, "libdeflate", recording)
    monkeypatch.setattr(optional_libraries, "pyspng", pyspng)
    with pytest.raises(ValueError, match="corrupt PNG: pyspng: could not decode image: IDAT stream too short"):
        decode_png(bomb(60000, 60000), mode="image", decoder="libdeflate", max_pixels=None)
    assert recording.sizes == [] and pyspng.calls == 1


# --- out of memory -----------------------------------------------------------------------------------------


class ExhaustedDeflate(RecordingDeflate):
    def zlib_decompress(self, data, size):
        raise MemoryError()


class ExhaustedPyspng:
    @staticmethod
    def load(data, format):
        raise MemoryError("std::bad_alloc")


def exhaust(decoder: str, monkeypatch) -> None:
    """Make ``decoder`` run out of memory (and only it: the others would decode)."""
    if decoder == "libdeflate":
        monkeypatch.setattr(optional_libraries, "libdeflate", ExhaustedDeflate())
    elif decoder == "pyspng":
        monkeypatch.setattr(optional_libraries, "pyspng", ExhaustedPyspng)
    else:
        def exhausted_open(*args, **kwargs):
            raise MemoryError("PIL")

        monkeypatch.setattr(png_decoders.Image, "open", exhausted_open)


@pytest.mark.parametrize("decoder", ["libdeflate", "pyspng", "pil"])
def test_decode_png_reports_memory_error_as_such_never_as_corrupt(decoder, monkeypatch):
    exhaust(decoder, monkeypatch)
    with pytest.raises(MemoryError, match=r"^out of memory decoding a 7 x 5 8-bit greyscale PNG$") as error:
        decode_png(grey_png(), mode="label", decoder=decoder)
    assert isinstance(error.value.__cause__, MemoryError)


def test_decode_png_auto_does_not_hand_a_memory_error_to_the_next_decoder(monkeypatch):
    exhaust("libdeflate", monkeypatch)
    with pytest.raises(MemoryError, match="out of memory decoding a 7 x 5"):
        decode_png(grey_png(), mode="label", decoder="auto")


@pytest.mark.parametrize("on_error", ["raise", "skip", "warn"])
def test_decode_png_pair_memory_error_names_sample_and_field_under_any_policy(on_error, monkeypatch):
    exhaust("pyspng", monkeypatch)
    counts = ErrorCounts()
    with pytest.raises(MemoryError, match=r"^sample 'dir/0001' in 's3://bucket/train/shard-000000.tar', field "
                                          r"'image': out of memory decoding a 7 x 5 8-bit greyscale PNG$") as error:
        decode_png_pair(sample(image=grey_png(), label=grey_png()), decoder="pyspng", on_error=on_error,
                        error_counts=counts)
    assert str(error.value.__cause__) == "std::bad_alloc"
    assert counts == ErrorCounts()
