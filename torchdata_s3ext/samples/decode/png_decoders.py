"""PNG bytes to a uint8 tensor: :func:`decode_png`, by one of the ``DECODERS`` or the ``"auto"`` chain of them.

``"libdeflate"`` (libdeflate inflates the pixel data, libspng undoes the row filters, see ``png_stored``),
``"pyspng"`` (libspng with zlib) and ``"pil"`` all give the pixels of ``np.asarray(PIL.Image.open(...)
.convert("RGB"))`` for images and ``np.asarray(PIL.Image.open(...))`` for labels. ``"auto"`` takes the fastest
that imports, and hands what one refuses to the next. How fast each is: docs/decoding.md.

Before any decoder allocates, the header's width x height is checked against ``max_pixels`` (``MAX_PIXELS``
by default): a PNG of a few hundred bytes can claim 16000 x 16000 pixels (768 MB decoded), and libspng and
libdeflate allocate what the header claims before reading the data.
"""
import io
from typing import Optional

import numpy as np
import torch
from PIL import Image

from . import optional
from .png import GREY, PALETTE, PngLayout, read_png_layout
from .pixels import check_pixel_count
from .png_stored import fits_stored_path, stored_copy

__all__ = ["DECODERS", "MAX_PIXELS", "MODES", "check_decoder_name", "check_max_pixels", "decode_png"]

DECODERS = ("auto", "libdeflate", "pyspng", "pil")
MODES = ("image", "label")
#: The default ``max_pixels``: PIL's default ``Image.MAX_IMAGE_PIXELS`` (a 256 MiB RGB image, about 9459 x 9459),
#: so that every decoder accepts what PIL accepts without warning. Images larger than this need ``max_pixels``.
MAX_PIXELS = 89_478_485


def check_decoder_name(decoder: str) -> str:
    if decoder not in DECODERS:
        raise ValueError(f"unknown PNG decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    return decoder


def check_max_pixels(max_pixels: Optional[int]) -> Optional[int]:
    if max_pixels is not None and (type(max_pixels) is not int or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None (no limit), not {max_pixels!r}")
    return max_pixels


def _decode_with_pil(data: bytes, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            return np.array(image.convert("RGB") if mode == "image" and image.mode != "RGB" else image)
    except MemoryError:
        raise
    except Image.DecompressionBombError as error:  # PIL's own limit, twice its Image.MAX_IMAGE_PIXELS
        raise ValueError(f"PNG over PIL's pixel limit: {error} (raise PIL.Image.MAX_IMAGE_PIXELS)") from error
    except Exception as error:  # PIL reports bad data as OSError, SyntaxError, EOFError, ...
        raise ValueError(f"corrupt PNG: {error}") from error


def _decode_with_pyspng(data: bytes, mode: str) -> np.ndarray:
    try:
        return optional.pyspng.load(data, format="RGB" if mode == "image" else "L")
    except MemoryError:
        raise
    except Exception as error:  # pyspng raises RuntimeError("pyspng: could not decode ...")
        raise ValueError(f"corrupt PNG: {error}") from error


def _decode_with_libdeflate(data: bytes, layout: PngLayout, mode: str) -> np.ndarray:
    """Inflate with libdeflate, unfilter with libspng: libspng reads the stored copy, which it copies instead
    of inflating, and undoes the row filters and expands the samples as usual."""
    return _decode_with_pyspng(stored_copy(data, layout), mode)


def _decode_pixels(data: bytes, layout: PngLayout, mode: str, decoder: str) -> np.ndarray:
    # libspng expands palettes to RGB, so palette labels (whose indices are the classes) go to PIL.
    if decoder == "pil" or (mode == "label" and layout.header.color_type == PALETTE):
        return _decode_with_pil(data, mode)
    if decoder == "libdeflate" and (optional.libdeflate is None or optional.pyspng is None):
        raise ModuleNotFoundError(
            "decoder='libdeflate' needs the deflate and pyspng packages: pip install deflate pyspng"
        )
    if optional.pyspng is None:
        if decoder == "pyspng":
            raise ModuleNotFoundError("decoder='pyspng' needs the pyspng package: pip install pyspng")
        return _decode_with_pil(data, mode)
    if (decoder != "pyspng" and optional.libdeflate is not None and not layout.interlaced and layout.idat_consecutive
            and fits_stored_path(layout.header)):
        try:
            return _decode_with_libdeflate(data, layout, mode)
        except ValueError:
            if decoder == "libdeflate":
                raise
            # "auto": what this path refuses goes to pyspng alone, then to PIL, as if it had not been tried.
    try:
        return _decode_with_pyspng(data, mode)
    except ValueError:
        if decoder != "auto":
            raise
    # "auto": PIL gets the last word on what libspng refuses (e.g. chunks over its 64 MiB limit).
    return _decode_with_pil(data, mode)


def decode_png(
    data: bytes, *, mode: str, decoder: str = "auto", max_pixels: Optional[int] = MAX_PIXELS
) -> torch.Tensor:
    """Decode PNG bytes to a uint8 tensor: ``mode="image"`` gives RGB ``(3, H, W)``, ``"label"`` gives ``(H, W)``.

    An image may be greyscale (repeated to 3 channels), RGB, RGBA or greyscale+alpha (alpha dropped) or
    palette (mapped to RGB), of 1 to 8 bits per sample. A label must be 8-bit greyscale (values kept) or
    palette (indices kept, the palette ignored). Pixels equal PIL's ``convert("RGB")`` for images and
    ``np.asarray(Image.open(...))`` for labels. The tensor is contiguous and owns its memory.

    Args:
        data: the PNG file's bytes
        mode: ``"image"`` or ``"label"``
        decoder: ``"auto"`` (the fastest that imports: ``"libdeflate"``, else ``"pyspng"``, else PIL; each
            hands what it refuses to the next), ``"libdeflate"`` (libdeflate inflates, pyspng unfilters;
            interlaced PNGs, and PNGs of over 4 GiB of pixel data, go to pyspng alone), ``"pyspng"`` or
            ``"pil"``. Palette labels always go through PIL, which keeps their indices.
        max_pixels: the most pixels (width x height) to decode, checked on the header before anything is
            allocated; ``MAX_PIXELS`` (89,478,485, PIL's default limit) by default, ``None`` for no limit.
            PIL keeps its own limit (``PIL.Image.MAX_IMAGE_PIXELS``: it warns above it, refuses above twice it)

    Raises:
        ValueError: corrupt or truncated data (the decoder's error as ``__cause__``), a 16-bit PNG, a PNG of
            more than ``max_pixels`` pixels, or a label that is not 8-bit greyscale or palette
        MemoryError: no memory for the decoded pixels (never reported as a corrupt PNG); the message names
            the PNG's size, the allocator's error as ``__cause__``
        TypeError: ``data`` is not bytes-like
        ModuleNotFoundError: ``decoder="pyspng"`` without pyspng installed, ``decoder="libdeflate"``
            without deflate or pyspng

    Example:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> png = io.BytesIO()
        >>> Image.fromarray(np.zeros((4, 6), np.uint8)).save(png, format="PNG")
        >>> decode_png(png.getvalue(), mode="image").shape, decode_png(png.getvalue(), mode="label").shape
        (torch.Size([3, 4, 6]), torch.Size([4, 6]))
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'image' or 'label'")
    check_decoder_name(decoder)
    check_max_pixels(max_pixels)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected PNG bytes, got {type(data).__name__}")
    if type(data) is not bytes:
        data = bytes(data)
    layout = read_png_layout(data)
    header = layout.header
    check_pixel_count("PNG", header.width, header.height, max_pixels)
    if header.bit_depth == 16:
        raise ValueError(f"16-bit PNGs are not supported (got a {header.describe()} PNG)")
    if mode == "label" and not (header.color_type == PALETTE or (header.color_type, header.bit_depth) == (GREY, 8)):
        raise ValueError(f"a label PNG must be 8-bit greyscale or palette, not {header.describe()}")
    try:
        pixels = _decode_pixels(data, layout, mode, decoder)
    except MemoryError as error:
        size = f"{header.width} x {header.height} {header.describe()}"
        raise MemoryError(f"out of memory decoding a {size} PNG") from error
    # numpy's HWC -> CHW copy is a little faster than torch's, and a contiguous tensor keeps the DataLoader's
    # torch.stack fast (stacking permuted views is several times slower than this copy).
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)) if mode == "image" else pixels)
