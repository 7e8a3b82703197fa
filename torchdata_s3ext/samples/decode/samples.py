""":func:`decode_sample`: every field of a WebDataset sample decoded by its
extension, as webdataset's ``.decode()`` does: images to uint8 tensors, classes to ints, text, JSON, ``.npy``
arrays to tensors, other fields left as bytes; handlers pluggable per extension."""
import dataclasses
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Union

from ..policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .failures import BadSample
from .field_handlers import FIELD_HANDLERS, field_extension
from .fields import describe_field
from .images import IMAGE_EXTENSIONS, IMAGE_MODES, decode_image
from .jpeg import check_jpeg_decoder_name
from .png_decoders import MAX_PIXELS, check_decoder_name, check_max_pixels

__all__ = ["LABEL_KEYS", "SampleDecoding", "decode_sample", "fields_decoded"]

#: the default ``label_keys``: an image field with one of these as a dot-part of its name is a label
LABEL_KEYS = ("label", "seg", "mask")

#: a handler: the field's bytes -> its value (``ValueError`` for bad data); ``None`` keeps the bytes; a
#: string names the built-in extension to decode as (``{"image": "png"}`` decodes ``KEY.image`` as a PNG)
Handler = Union[None, str, Callable[[bytes], Any]]


@dataclasses.dataclass(frozen=True)
class SampleDecoding:
    """How :func:`decode_sample` decodes, validated once (see :class:`SampleDecoderIterDataPipe` for each)."""

    image_mode: str = "RGB"
    label_keys: Iterable[str] = frozenset(LABEL_KEYS)  # stored as a frozenset of lower-cased keys
    handlers: Mapping[str, Handler] = dataclasses.field(default_factory=dict)
    max_pixels: Optional[int] = MAX_PIXELS
    png_decoder: str = "auto"
    jpeg_decoder: str = "auto"

    def __post_init__(self) -> None:
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode must be one of {', '.join(map(repr, IMAGE_MODES))}, not {self.image_mode!r}")
        label_keys = (self.label_keys,) if isinstance(self.label_keys, str) else self.label_keys
        if not all(isinstance(key, str) for key in label_keys):
            raise TypeError(f"label_keys must be strings, not {label_keys!r}")
        object.__setattr__(self, "label_keys", frozenset(key.lower() for key in label_keys))
        object.__setattr__(self, "handlers", _checked_handlers(self.handlers))
        check_max_pixels(self.max_pixels)
        check_decoder_name(self.png_decoder)
        check_jpeg_decoder_name(self.jpeg_decoder)

    def is_label(self, field: str) -> bool:
        """Whether an image field is a label: its name, or one of its dot-parts, is in ``label_keys``."""
        name = field.lower()
        return name in self.label_keys or not self.label_keys.isdisjoint(name.split("."))


def _checked_handlers(handlers: Optional[Mapping[str, Handler]]) -> Dict[str, Handler]:
    builtin = set(IMAGE_EXTENSIONS) | set(FIELD_HANDLERS)
    checked: Dict[str, Handler] = {}
    for extension, handler in (handlers or {}).items():
        if not isinstance(extension, str) or not extension or "." in extension:
            raise ValueError(f"handlers are keyed by an extension without dots ('jpg', 'cls'), not {extension!r}")
        if isinstance(handler, str) and handler.lower() not in builtin:
            raise ValueError(f"handler {extension!r}: {handler!r} names no built-in extension; "
                             f"choose one of {', '.join(sorted(builtin))}")
        if not (handler is None or isinstance(handler, str) or callable(handler)):
            raise TypeError(f"handler {extension!r} must be a callable, a built-in extension or None, "
                            f"not {type(handler).__name__}")
        checked[extension.lower()] = handler.lower() if isinstance(handler, str) else handler
    return checked


def _decode_field(field: str, data: bytes, decoding: SampleDecoding) -> Any:
    extension = field_extension(field)
    handler = decoding.handlers.get(extension, extension)  # a string: decode as that built-in extension
    if handler is None or callable(handler):
        return data if handler is None else handler(data)
    if handler in IMAGE_EXTENSIONS:
        return decode_image(data, mode="label" if decoding.is_label(field) else decoding.image_mode,
                            max_pixels=decoding.max_pixels, png_decoder=decoding.png_decoder,
                            jpeg_decoder=decoding.jpeg_decoder)
    builtin = FIELD_HANDLERS.get(handler)
    return data if builtin is None else builtin(data)


def decode_fields(sample: Dict[str, Any], decoding: SampleDecoding) -> Dict[str, Any]:
    """The decoded copy of ``sample``: every field but ``__meta__`` ones, if bytes (other values pass as they
    are, so a field decoded before is not decoded again).

    Raises:
        ValueError: bad data (a field that does not decode); the message names the sample, URL and field
        MemoryError: no memory to decode an image, likewise named
    """
    decoded = dict(sample)
    for field, value in sample.items():
        if field.startswith("__") or not isinstance(value, (bytes, bytearray, memoryview)):
            continue
        try:
            decoded[field] = _decode_field(field, value, decoding)
        except MemoryError as error:  # not bad data: the image was within max_pixels
            raise MemoryError(f"{describe_field(sample, field)}: {error}") from (error.__cause__ or error)
        except ValueError as error:  # the handlers' bad data, UnicodeDecodeError and JSONDecodeError too
            raise with_message(error, f"{describe_field(sample, field)}: {error}") from None
    return decoded


def decode_sample(
    sample: Dict[str, Any],
    *,
    image_mode: str = "RGB",
    label_keys: Iterable[str] = LABEL_KEYS,
    handlers: Optional[Mapping[str, Handler]] = None,
    max_pixels: Optional[int] = MAX_PIXELS,
    png_decoder: str = "auto",
    jpeg_decoder: str = "auto",
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Optional[Dict[str, Any]]:
    """A copy of ``sample`` with each field decoded by its extension (see ``decode_samples``).

    A field that does not decode is bad data, counted as ``corrupt_images`` in ``error_counts``:
    ``on_error="raise"`` raises, ``"skip"`` and ``"warn"`` (which also warns and logs) return ``None``.

    Raises:
        ValueError: an unknown option (under any ``on_error``); bad data under ``on_error="raise"``, the
            message naming the sample's URL, key and field
        MemoryError: no memory to decode an image, under any ``on_error``

    Example:
        >>> sample = {"__key__": "0", "__url__": "s3://bucket/shard-000000.tar", "cls": b"7", "json": b'{"a": 1}'}
        >>> decode_sample(sample)
        {'__key__': '0', '__url__': 's3://bucket/shard-000000.tar', 'cls': 7, 'json': {'a': 1}}
    """
    decoding = SampleDecoding(image_mode, label_keys, handlers or {}, max_pixels, png_decoder, jpeg_decoder)
    check_on_error(on_error)
    try:
        return decode_fields(sample, decoding)
    except ValueError as error:
        counts = error_counts if error_counts is not None else ErrorCounts()
        handle_data_error(error, kind="corrupt_images", on_error=on_error, error_counts=counts)
        return None


def fields_decoded(sample: Dict[str, Any], decoding: SampleDecoding) -> Dict[str, Any]:
    """:func:`decode_fields`, bad data raised as :class:`~.failures.BadSample` (what the ``decode`` stage takes)."""
    try:
        return decode_fields(sample, decoding)
    except ValueError as error:  # bad data, named by decode_fields
        raise BadSample(error, "corrupt_images") from None
