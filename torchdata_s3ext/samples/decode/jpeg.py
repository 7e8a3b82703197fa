"""JPEG bytes to pixels: the frame header read first (size and components, before anything is allocated),
then simplejpeg (libjpeg-turbo, bundled in its wheels) or PIL.

simplejpeg gives PIL's pixels exactly: both run libjpeg-turbo with its default (accurate integer) IDCT and
fancy upsampling. It decoded 1024x1024 quality-90 JPEGs 1.13x to 1.27x as fast as PIL (docs/decoding.md).
CMYK and YCCK JPEGs go to PIL, whose Adobe inversion simplejpeg does not match to the level; ``"auto"``
also hands PIL whatever simplejpeg refuses.
"""
import struct
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image

from . import optional
from .pixels import PIXEL_MODES, check_pixel_count, decode_with_pil

__all__ = ["JPEG_DECODERS", "JpegHeader", "check_jpeg_decoder_name", "decode_jpeg", "read_jpeg_header"]

JPEG_DECODERS = ("auto", "simplejpeg", "pil")

_SOI = b"\xff\xd8"
#: start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic), not DHT/JPG/DAC
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: markers without a length: TEM and RST0-7
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _EOI = 0xDA, 0xD9


class JpegHeader(NamedTuple):
    width: int
    height: int
    components: int  # 1: greyscale, 3: YCbCr (or RGB), 4: CMYK or YCCK
    precision: int  # bits per sample


def check_jpeg_decoder_name(decoder: str) -> str:
    if decoder not in JPEG_DECODERS:
        raise ValueError(f"unknown JPEG decoder {decoder!r}; choose one of {', '.join(JPEG_DECODERS)}")
    return decoder


def read_jpeg_header(data: bytes) -> JpegHeader:
    """The frame header (SOF) of a JPEG: the markers before it are walked by their lengths, nothing decoded.

    >>> sof0 = bytes([0xFF, 0xC0, 0, 11, 8, 0, 30, 0, 40, 1, 1, 0x11, 0])
    >>> read_jpeg_header(b"\\xff\\xd8" + sof0)
    JpegHeader(width=40, height=30, components=1, precision=8)

    Raises:
        ValueError: not a JPEG, truncated before the frame header, or a frame without a height
    """
    view = memoryview(data)
    if bytes(view[:2]) != _SOI:
        raise ValueError("not a JPEG (no SOI marker)")
    position = 2
    while True:
        if position >= len(view) or view[position] != 0xFF:
            raise ValueError(f"truncated or corrupt JPEG: no marker at byte {position}")
        while position < len(view) and view[position] == 0xFF:  # a marker may follow any number of fill bytes
            position += 1
        if position + 3 > len(view):
            raise ValueError("truncated JPEG: no frame header (SOF)")
        marker = view[position]
        position += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (_SOS, _EOI):
            raise ValueError("corrupt JPEG: no frame header (SOF) before the image data")
        (length,) = struct.unpack_from(">H", view, position)
        if marker in _SOF_MARKERS:
            if length < 8 or position + 8 > len(view):
                raise ValueError(f"truncated JPEG: frame header at byte {position - 2}")
            precision, height, width, components = struct.unpack_from(">BHHB", view, position + 2)
            if height == 0 or width == 0:
                raise ValueError(f"unsupported JPEG: a frame of {width} x {height} (its height given after the data)")
            return JpegHeader(width, height, components, precision)
        if length < 2:
            raise ValueError(f"corrupt JPEG: marker segment of length {length} at byte {position - 2}")
        position += length


def _decode_with_simplejpeg(data: bytes, header: JpegHeader, mode: str) -> np.ndarray:
    try:
        if mode == "RGB" or header.components != 1:
            pixels = optional.simplejpeg.decode_jpeg(data, colorspace="RGB")
        else:
            return optional.simplejpeg.decode_jpeg(data, colorspace="GRAY")[:, :, 0]
    except MemoryError:
        raise
    except Exception as error:  # simplejpeg raises ValueError("Premature end of JPEG file"), ...
        raise ValueError(f"corrupt JPEG: {error}") from error
    # libjpeg's greyscale output of a colour JPEG is its Y channel, up to 17 levels from PIL's convert("L")
    # of the RGB pixels: convert the same way.
    return pixels if mode == "RGB" else np.array(Image.fromarray(pixels).convert("L"))


def decode_jpeg(
    data: bytes, *, mode: str = "RGB", decoder: str = "auto", max_pixels: Optional[int] = None
) -> np.ndarray:
    """JPEG bytes to uint8 pixels: ``(H, W, 3)`` for ``mode="RGB"``, ``(H, W)`` for ``"L"`` and ``"label"``.

    The pixels equal ``np.asarray(PIL.Image.open(...).convert(mode))``; a label must be a greyscale JPEG
    (values kept). ``max_pixels`` is checked on the frame header before any decoder runs.

    Raises:
        ValueError: corrupt or truncated data, an image over ``max_pixels``, a colour JPEG as a label
        MemoryError: no memory for the pixels; the message names the size
        ModuleNotFoundError: ``decoder="simplejpeg"`` without simplejpeg installed
    """
    if mode not in PIXEL_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(PIXEL_MODES)}")
    check_jpeg_decoder_name(decoder)
    header = read_jpeg_header(data)
    check_pixel_count("JPEG", header.width, header.height, max_pixels)
    if mode == "label" and header.components != 1:
        raise ValueError(f"a label JPEG must be greyscale, not of {header.components} components")
    if decoder == "simplejpeg" and optional.simplejpeg is None:
        raise ModuleNotFoundError("jpeg_decoder='simplejpeg' needs the simplejpeg package: pip install simplejpeg")
    try:
        if decoder != "pil" and optional.simplejpeg is not None and header.components in (1, 3):
            try:
                return _decode_with_simplejpeg(data, header, mode)
            except ValueError:
                if decoder != "auto":
                    raise
        return decode_with_pil(data, ("JPEG",), mode)
    except MemoryError as error:
        raise MemoryError(f"out of memory decoding a {header.width} x {header.height} JPEG of "
                          f"{header.components} components") from error
