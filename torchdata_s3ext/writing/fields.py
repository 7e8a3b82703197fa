"""A sample's fields -> the bytes of its tar members, by WebDataset's conventions (``webdataset.TarWriter``'s
default encoder), so its readers and ours decode them back alike:

- bytes (``bytes``, ``bytearray``, ``memoryview``) are written as they are, whatever the field's extension;
- ``str`` as UTF-8; an integer (``int``, ``numpy.int64``, ...) as its decimal text (``cls``: ``3`` -> ``b"3"``);
- a ``dict``, ``list`` or ``tuple`` as JSON;
- a numpy array as an ``.npy`` file, unless the field's extension names an image format;
- a PIL image, or a ``uint8`` numpy array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), in the image
  format its extension names: ``jpg``/``jpeg``/``img``/``image`` (JPEG, quality 100, as webdataset),
  ``png``, ``ppm``/``pgm``/``pbm``, ``tif``/``tiff``, ``webp`` (lossless).

The extension is the field's last dot-part, lower-cased (``"seg.png"`` -> ``png``). Where we differ from
webdataset: a ``bool`` or a ``float`` is refused (webdataset writes ``True`` or ``0.5`` as text for some
extensions and fails for others: give ``str`` or ``int`` yourself); a field ending in ``.gz`` is not
compressed for you (give the compressed bytes); a non-``uint8`` array for an image extension is refused
rather than rescaled.
"""
import io
import json
import numbers
from typing import Any, Callable, Dict

import numpy as np

__all__ = ["IMAGE_FORMATS", "encode_field", "field_extension"]

#: image extension -> (PIL format, save options); webdataset's writer names the same formats, but for webp
IMAGE_FORMATS: Dict[str, tuple] = {
    **dict.fromkeys(("jpg", "jpeg", "img", "image"), ("JPEG", {"quality": 100})),
    "png": ("PNG", {}),
    **{extension: ("PPM", {}) for extension in ("ppm", "pgm", "pbm")},
    **dict.fromkeys(("tif", "tiff"), ("TIFF", {})),
    "webp": ("WEBP", {"lossless": True}),
}


def field_extension(field: str) -> str:
    """The part of a field's name that picks its encoding: the last dot-part, lower-cased.

    >>> field_extension("image.PNG"), field_extension("cls")
    ('png', 'cls')
    """
    return field.rsplit(".", 1)[-1].lower()


def _image_bytes(image: Any, extension: str) -> bytes:
    from PIL import Image

    pil_format, options = IMAGE_FORMATS[extension]
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8 (got {image.dtype}); scale and convert it first")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _is_pil_image(value: Any) -> bool:
    # Without importing PIL for samples that hold no image.
    return any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image" for cls in type(value).__mro__)


def _encoder_for(value: Any, extension: str) -> Callable[[Any], bytes]:
    """How ``value`` becomes bytes; ``TypeError`` saying what is accepted when it cannot."""
    if isinstance(value, str):
        return lambda text: text.encode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool has no agreed encoding: give int(value) or str(value)")
    if isinstance(value, numbers.Integral):
        return lambda number: str(int(number)).encode("ascii")
    if isinstance(value, (dict, list, tuple)):
        return lambda document: json.dumps(document).encode("utf-8")
    if isinstance(value, np.ndarray) and extension not in IMAGE_FORMATS:
        return _npy_bytes
    if isinstance(value, np.ndarray) or _is_pil_image(value):
        if extension not in IMAGE_FORMATS:
            raise TypeError(f"a PIL image needs an image extension ({', '.join(sorted(IMAGE_FORMATS))}), "
                            f"not {extension!r}")
        return lambda image: _image_bytes(image, extension)
    raise TypeError(
        f"cannot encode a {type(value).__name__}: give bytes, str, an int, a dict/list/tuple (JSON), a numpy array "
        "(.npy, or an image for an image extension) or a PIL image"
    )


def encode_field(field: str, value: Any) -> Any:
    """The bytes of field ``field`` holding ``value`` (a bytes-like value itself, not copied).

    Raises:
        TypeError: a value of a type without an encoding, or an image for a field without an image extension

    >>> encode_field("cls", 3), encode_field("meta.json", {"a": 1}), encode_field("txt", "é")
    (b'3', b'{"a": 1}', b'\\xc3\\xa9')
    """
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, memoryview):
        return value.cast("B") if value.c_contiguous else value.tobytes()
    return _encoder_for(value, field_extension(field))(value)
