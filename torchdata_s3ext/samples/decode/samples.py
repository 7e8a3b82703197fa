"""The ``decode_samples`` datapipe and :func:`decode_sample`: every field of a WebDataset sample decoded by its
extension, as webdataset's ``.decode()`` does: images to uint8 tensors, classes to ints, text, JSON, ``.npy``
arrays to tensors, other fields left as bytes; handlers pluggable per extension."""
import dataclasses
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Union

from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from ..positions import PassesCheckpointOn
from ..policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .failures import GIVE_UP_AFTER, BadSample, check_give_up_after, decoded_under_policy
from .field_handlers import FIELD_HANDLERS, field_extension
from .fields import describe_field
from .images import IMAGE_EXTENSIONS, IMAGE_MODES, decode_image
from .jpeg import check_jpeg_decoder_name
from .png_decoders import MAX_PIXELS, check_decoder_name, check_max_pixels

__all__ = ["LABEL_KEYS", "SampleDecoderIterDataPipe", "SampleDecoding", "decode_sample"]

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
    """A copy of ``sample`` with each field decoded by its extension (see :class:`SampleDecoderIterDataPipe`).

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


@functional_datapipe("decode_samples")
class SampleDecoderIterDataPipe(PassesCheckpointOn, IterDataPipe[Dict[str, Any]]):
    r"""
    Decodes every field of each WebDataset sample by its extension, as webdataset's ``.decode()`` does
    (functional name: ``decode_samples``).

    The extension is a field's last dot-part, lower-cased (``image.JPG`` -> ``jpg``); the built-in decoders:

    - ``jpg``, ``jpeg``, ``png``, ``webp``, ``ppm``, ``pgm``, ``pbm``, ``pnm``: a contiguous uint8 tensor,
      ``(3, H, W)`` RGB (``image_mode="RGB"``) or ``(1, H, W)`` greyscale (``"L"``); a label image (see
      ``label_keys``) ``(H, W)`` with its values kept. The bytes' signature picks the decoder: PNG by
      libdeflate + libspng (as ``decode_png_pair``), JPEG by simplejpeg (libjpeg-turbo), others by PIL.
      Pixels equal PIL's ``convert("RGB")`` / ``convert("L")``
    - ``cls``, ``cls2``, ``class``, ``count``, ``index``, ``inx``, ``id``: ``int``
    - ``txt``, ``text``, ``transcript``: ``str`` (UTF-8); ``json``, ``jsn``: the JSON value
    - ``npy``: a tensor of the array's dtype and shape (``numpy.load(allow_pickle=False)``)
    - anything else stays bytes, and so do ``__key__``, ``__url__`` and values that are not bytes

    Args:
        source_datapipe: samples as ``group_wds_samples()`` yields them
        image_mode: ``"RGB"`` (default) or ``"L"``
        label_keys: an image field is a label when its name or one of its dot-parts is one of these
            (``label.png``, ``x.seg.png``, ``mask.png`` by default: ``("label", "seg", "mask")``); a label
            must be 8-bit greyscale or palette. ``()`` decodes every image as an image
        handlers: ``{extension: handler}`` adding or overriding decoders: a callable taking the field's bytes
            (raising ``ValueError`` for bad data; it must pickle, for DataLoader workers), ``None`` to keep
            the bytes, or a built-in extension to decode as (``{"image": "png", "label": "png"}`` for the
            article's ``KEY.image``/``KEY.label`` PNGs). ``max_pixels`` does not reach callables
        max_pixels: the most pixels (width x height) of an image, checked on its header before anything is
            allocated; ``MAX_PIXELS`` (89,478,485, PIL's default limit) by default, ``None`` for no limit
        png_decoder: ``decode_png``'s decoder (``"auto"``, ``"libdeflate"``, ``"pyspng"``, ``"pil"``)
        jpeg_decoder: ``"auto"`` (simplejpeg, else PIL; PIL gets what simplejpeg refuses), ``"simplejpeg"``
            or ``"pil"``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``: what a sample with a field that does not
            decode does (a corrupt, truncated, unsupported or oversized image, bad JSON or UTF-8, a class that
            is not an int, a bad ``.npy``, a handler's ``ValueError``): raise, or be dropped (silently, or with
            a ``DataErrorWarning`` and a log record on logger ``"torchdata_s3ext"``)
        error_counts: where to count such samples, as ``corrupt_images``; a new :class:`ErrorCounts` by default
        give_up_after: under ``"skip"``/``"warn"``, raise once this many samples (100 by default) from two
            shards or more have failed before any decoded; ``None`` never raises. A shard of which every sample
            failed is warned of at the end of the pass, as for ``decode_png_pair``

    Example:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> jpeg = io.BytesIO()
        >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(jpeg, format="JPEG", quality=90)
        >>> sample = {"__key__": "n01440764_10026", "__url__": "s3://bucket/shard-000000.tar",
        ...           "jpg": jpeg.getvalue(), "cls": b"0"}
        >>> decoded = next(iter(IterableWrapper([sample]).decode_samples()))
        >>> decoded["jpg"].shape, decoded["jpg"].dtype, decoded["cls"]
        (torch.Size([3, 4, 6]), torch.uint8, 0)
    """

    def __init__(
        self,
        source_datapipe: IterDataPipe[Dict[str, Any]],
        image_mode: str = "RGB",
        label_keys: Iterable[str] = LABEL_KEYS,
        handlers: Optional[Mapping[str, Handler]] = None,
        max_pixels: Optional[int] = MAX_PIXELS,
        png_decoder: str = "auto",
        jpeg_decoder: str = "auto",
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
        give_up_after: Optional[int] = GIVE_UP_AFTER,
    ) -> None:
        self.source_datapipe = source_datapipe
        self.decoding = SampleDecoding(image_mode, label_keys, handlers or {}, max_pixels, png_decoder, jpeg_decoder)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()
        self.give_up_after: Optional[int] = check_give_up_after(give_up_after)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        yield from decoded_under_policy(
            self.source_datapipe, self._decode_one, self.on_error, self.error_counts, self.give_up_after, "decode_samples"
        )

    def _decode_one(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return decode_fields(sample, self.decoding)
        except ValueError as error:  # bad data, named by decode_fields
            raise BadSample(error, "corrupt_images") from None

    def __len__(self) -> int:
        if self.on_error != "raise":  # skipped samples make the length unknown in advance
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return len(self.source_datapipe)
