"""What every image decoder shares: the pixel limit, checked on a header before anything is allocated, and
PIL's decode, the reference every decoder's pixels equal and the last word on what the native ones refuse."""
import io
from typing import Optional, Sequence

import numpy as np
from PIL import Image

__all__ = ["PIXEL_MODES", "check_pixel_count", "decode_with_pil"]

#: ``"RGB"`` (``convert("RGB")``), ``"L"`` (``convert("L")``) and ``"label"`` (values kept: greyscale or palette)
PIXEL_MODES = ("RGB", "L", "label")


def check_pixel_count(image_format: str, width: int, height: int, max_pixels: Optional[int]) -> None:
    """Raises ValueError (bad data) when a header's ``width`` x ``height`` is over ``max_pixels``."""
    pixel_count = width * height
    if max_pixels is not None and pixel_count > max_pixels:
        raise ValueError(
            f"{image_format} of {width} x {height} = {pixel_count:,} pixels is over the limit of {max_pixels:,} "
            f"pixels; pass a larger max_pixels (or max_pixels=None for no limit) if such images are expected"
        )


def decode_with_pil(
    data: bytes, image_formats: Sequence[str], mode: str, max_pixels: Optional[int] = None
) -> np.ndarray:
    """The pixels of ``np.asarray(Image.open(...).convert(mode))``, or for ``mode="label"`` of the greyscale or
    palette image as it is; ``max_pixels`` is checked on the size ``Image.open`` reads, before the pixels load.

    Raises:
        ValueError: bad data (``"corrupt <FORMAT>: ..."``, the decoder's error as ``__cause__``), an image over
            ``max_pixels`` or over PIL's own limit, or a label that is neither greyscale nor palette
    """
    try:
        image = Image.open(io.BytesIO(data), formats=list(image_formats))
    except Image.DecompressionBombError as error:  # PIL's own limit, twice its Image.MAX_IMAGE_PIXELS
        raise ValueError(f"{'/'.join(image_formats)} over PIL's pixel limit: {error} "
                         f"(raise PIL.Image.MAX_IMAGE_PIXELS)") from error
    except Exception as error:  # PIL reports bad data as OSError, SyntaxError, EOFError, ...
        raise ValueError(f"corrupt {'/'.join(image_formats)}: {error}") from error
    with image:
        name = image.format or "/".join(image_formats)
        check_pixel_count(name, image.width, image.height, max_pixels)
        if mode == "label" and image.mode not in ("L", "P"):
            raise ValueError(f"a label {name} must be 8-bit greyscale or palette, not mode {image.mode}")
        try:  # the pixels load here
            return np.array(image if image.mode == mode or mode == "label" else image.convert(mode))
        except MemoryError:
            raise
        except Exception as error:
            raise ValueError(f"corrupt {name}: {error}") from error
