"""Image bytes of any of ``decode_samples``' formats to a uint8 tensor, the decoder chosen by the bytes' own
signature (a ``.jpg`` that holds a PNG still decodes), the pixel limit checked on the header first.

PNGs go to :func:`decode_png` (libdeflate + libspng), JPEGs to :func:`decode_jpeg` (simplejpeg), WebP and
PPM/PGM/PBM to PIL. Pixels equal PIL's ``convert("RGB")`` or ``convert("L")``; labels keep their values.
"""
from typing import Optional

import numpy as np
import torch

from .jpeg import decode_jpeg
from .pixels import check_pixel_count, decode_with_pil
from .png import GREY, read_png_header
from .png_decoders import MAX_PIXELS, decode_png

__all__ = ["IMAGE_EXTENSIONS", "IMAGE_MODES", "decode_image"]

#: the extensions decoded as images (PPM's family as PIL reads it)
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "pbm", "pnm")
#: ``image_mode``: ``"RGB"`` gives ``(3, H, W)``, ``"L"`` (greyscale, PIL's ``convert("L")``) ``(1, H, W)``
IMAGE_MODES = ("RGB", "L")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
#: what PIL may open besides PNG and JPEG: no other plugin sees the bytes
_PIL_FORMATS = ("WEBP", "PPM")


def _png(data: bytes, mode: str, png_decoder: str, max_pixels: Optional[int]) -> torch.Tensor:
    if mode != "L":
        return decode_png(data, mode="image" if mode == "RGB" else "label", decoder=png_decoder, max_pixels=max_pixels)
    header = read_png_header(data)  # also checks every chunk's CRC
    if (header.color_type, header.bit_depth) == (GREY, 8):  # already "L": the fast label path gives its pixels
        return decode_png(data, mode="label", decoder=png_decoder, max_pixels=max_pixels)
    check_pixel_count("PNG", header.width, header.height, max_pixels)
    return torch.from_numpy(decode_with_pil(data, ("PNG",), "L"))


def decode_image(
    data: bytes,
    *,
    mode: str = "RGB",
    max_pixels: Optional[int] = MAX_PIXELS,
    png_decoder: str = "auto",
    jpeg_decoder: str = "auto",
) -> torch.Tensor:
    """Decode a PNG, JPEG, WebP or PPM/PGM/PBM image to a contiguous uint8 tensor.

    Args:
        data: the image file's bytes
        mode: ``"RGB"`` gives ``(3, H, W)``, ``"L"`` ``(1, H, W)`` (PIL's ``convert("L")``), ``"label"``
            ``(H, W)`` with the values kept (the image must be 8-bit greyscale or palette)
        max_pixels: the most pixels (width x height), checked on the header before anything is allocated;
            ``None`` for no limit
        png_decoder: the :func:`decode_png` decoder
        jpeg_decoder: ``"auto"`` (simplejpeg, else PIL), ``"simplejpeg"`` or ``"pil"``

    Raises:
        ValueError: corrupt, truncated or unsupported data, over ``max_pixels``, or a colour label
        MemoryError: no memory for the pixels

    Example:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> jpeg = io.BytesIO()
        >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(jpeg, format="JPEG")
        >>> decode_image(jpeg.getvalue()).shape, decode_image(jpeg.getvalue(), mode="L").shape
        (torch.Size([3, 4, 6]), torch.Size([1, 4, 6]))
    """
    if mode not in IMAGE_MODES + ("label",):
        raise ValueError(f"unknown image mode {mode!r}; choose one of {', '.join(IMAGE_MODES)} or 'label'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data) if type(data) is not bytes else data
    if data.startswith(_PNG_SIGNATURE):
        pixels = _png(data, mode, png_decoder, max_pixels)
        return pixels.unsqueeze(0) if mode == "L" else pixels
    if data.startswith(_JPEG_SOI):
        array = decode_jpeg(data, mode=mode, decoder=jpeg_decoder, max_pixels=max_pixels)
    else:
        array = decode_with_pil(data, _PIL_FORMATS, mode, max_pixels)
    if mode == "RGB":  # a contiguous CHW copy keeps the DataLoader's torch.stack fast (see decode_png)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return torch.from_numpy(array).unsqueeze(0) if mode == "L" else torch.from_numpy(array)
