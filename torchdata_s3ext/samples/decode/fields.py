"""Which field of a sample a decoder's key names: ``"image"`` names ``image`` and ``image.png``."""
from typing import Any, Dict, List, Sequence

__all__ = ["MissingFieldError", "describe_field", "field_named", "fields_matching"]


class MissingFieldError(ValueError):
    """A sample lacks the field a key names: bad data (an incomplete sample), where a key naming several
    fields is the caller's mistake."""


def fields_matching(key: str, fields: Sequence[str]) -> List[str]:
    """The fields a key names: ``key`` itself, ``key.<ext>`` or ``<anything>.key``; never ``__meta__`` fields.

    >>> fields_matching("image", ["__key__", "image.png", "label.png"])
    ['image.png']
    >>> fields_matching("png", ["__key__", "image.png", "label.png"])
    ['image.png', 'label.png']
    """
    return [
        field
        for field in fields
        if not field.startswith("__") and (field == key or field.startswith(key + ".") or field.endswith("." + key))
    ]


def field_named(sample: Dict[str, Any], key: str, role: str) -> str:
    """The one field of ``sample`` that ``key`` names; ``role`` (``"image"``, ``"label"``) says what it is for.

    Raises:
        MissingFieldError: ``key`` names no field (a ``ValueError``)
        ValueError: ``key`` names several fields; the message names the sample's URL and key
    """
    fields = fields_matching(key, list(sample))
    if len(fields) != 1:
        raise (ValueError if fields else MissingFieldError)(
            f"sample {sample.get('__key__')!r} in {sample.get('__url__')!r}: {role} key {key!r} must match exactly "
            f"one field, matches {fields}; the sample has fields {[f for f in sample if not f.startswith('__')]}"
        )
    return fields[0]


def describe_field(sample: Dict[str, Any], field: str) -> str:
    """How an error names a field: ``sample 'KEY' in 'URL', field 'FIELD'``."""
    return f"sample {sample.get('__key__')!r} in {sample.get('__url__')!r}, field {field!r}"
