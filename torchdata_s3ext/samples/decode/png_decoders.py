"""PNG bytes to a uint8 tensor: :func:`decode_png`, by one of the ``DECODERS`` or the ``"auto"`` chain of them.

``"libdeflate"`` (libdeflate inflates the pixel data, libspng undoes the row filters, see ``png_stored``),
``"pyspng"`` (libspng with zlib) and ``"pil"`` all give the pixels of ``np.asarray(PIL.Image.open(...)
.convert("RGB"))`` for images and ``np.asarray(PIL.Image.open(...))`` for labels. ``"auto"`` takes the fastest
that imports, and hands what one refuses to the next. How fast each is: docs/decoding.md.
"""
import io

import numpy as np
import torch
from PIL import Image

from . import optional
from .png import GREY, PALETTE, PngLayout, read_png_layout
from .png_stored import stored_copy

__all__ = ["DECODERS", "MODES", "check_decoder_name", "decode_png"]

DECODERS = ("auto", "libdeflate", "pyspng", "pil")
MODES = ("image", "label")


def check_decoder_name(decoder: str) -> str:
    if decoder not in DECODERS:
        raise ValueError(f"unknown PNG decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    return decoder


def _decode_with_pil(data: bytes, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            return np.array(image.convert("RGB") if mode == "image" and image.mode != "RGB" else image)
    except Exception as error:  # PIL reports bad data as OSError, SyntaxError, EOFError, ...
        raise ValueError(f"corrupt PNG: {error}") from error


def _decode_with_pyspng(data: bytes, mode: str) -> np.ndarray:
    try:
        return optional.pyspng.load(data, format="RGB" if mode == "image" else "L")
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
    if decoder != "pyspng" and optional.libdeflate is not None and not layout.interlaced and layout.idat_consecutive:
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


def decode_png(data: bytes, *, mode: str, decoder: str = "auto") -> torch.Tensor:
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
            interlaced PNGs go to pyspng alone), ``"pyspng"`` or ``"pil"``. Palette labels always go through
            PIL, which keeps their indices.

    Raises:
        ValueError: corrupt or truncated data (the decoder's error as ``__cause__``), a 16-bit PNG,
            or a label that is not 8-bit greyscale or palette
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
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected PNG bytes, got {type(data).__name__}")
    if type(data) is not bytes:
        data = bytes(data)
    layout = read_png_layout(data)
    header = layout.header
    if header.bit_depth == 16:
        raise ValueError(f"16-bit PNGs are not supported (got a {header.describe()} PNG)")
    if mode == "label" and not (header.color_type == PALETTE or (header.color_type, header.bit_depth) == (GREY, 8)):
        raise ValueError(f"a label PNG must be 8-bit greyscale or palette, not {header.describe()}")
    pixels = _decode_pixels(data, layout, mode, decoder)
    # numpy's HWC -> CHW copy is a little faster than torch's, and a contiguous tensor keeps the DataLoader's
    # torch.stack fast (stacking permuted views is several times slower than this copy).
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)) if mode == "image" else pixels)
