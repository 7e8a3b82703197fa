"""The built-in decoders of ``decode_samples`` for fields that are not images, by extension, as WebDataset's
``basichandlers`` names them; and how a field's extension is read.

Each handler takes the field's bytes and raises ``ValueError`` for bad data. Nothing unpickles: pickles,
``.pth`` and ``.npy`` files of objects stay bytes or are refused (``numpy.load(allow_pickle=False)``).
"""
import io
import json
from typing import Any, Callable, Dict

import numpy as np
import torch

__all__ = ["FIELD_HANDLERS", "decode_int", "decode_json", "decode_npy", "decode_text", "field_extension"]


def field_extension(field: str) -> str:
    """The extension that picks a field's decoder: its last dot-part, lower-cased (WebDataset's rule).

    >>> field_extension("image.JPG"), field_extension("x.seg.png"), field_extension("cls")
    ('jpg', 'png', 'cls')
    """
    return field.rsplit(".", 1)[-1].lower()


def decode_int(data: bytes) -> int:
    """``b"3"`` -> ``3`` (surrounding whitespace allowed)."""
    return int(data)


def decode_text(data: bytes) -> str:
    return data.decode("utf-8")


def decode_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError as error:  # nesting deeper than the interpreter's stack
        raise ValueError(f"JSON nested too deeply: {error}") from None


def decode_npy(data: bytes) -> torch.Tensor:
    """An ``.npy`` file to a tensor of its dtype and shape, never unpickling (object arrays are refused)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError:
        raise
    except Exception as error:  # a truncated header raises EOFError or OSError
        raise ValueError(f"corrupt .npy: {error}") from error
    if not isinstance(array, np.ndarray):
        raise ValueError(f"not an .npy array: numpy.load gave a {type(array).__name__}")
    if not array.dtype.isnative:  # torch takes native byte order only
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(array)
    except TypeError as error:  # strings, structured dtypes, ...
        raise ValueError(f".npy of dtype {array.dtype} has no torch dtype: {error}") from error


#: extension -> decoder, for the fields that are not images; other extensions stay bytes
FIELD_HANDLERS: Dict[str, Callable[[bytes], Any]] = {
    **dict.fromkeys(("cls", "cls2", "class", "count", "index", "inx", "id"), decode_int),
    **dict.fromkeys(("txt", "text", "transcript"), decode_text),
    **dict.fromkeys(("json", "jsn"), decode_json),
    "npy": decode_npy,
}
