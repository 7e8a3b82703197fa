"""Decoding the PNG pair: the PNG image and label bytes of a sample in, uint8 tensors out, a corrupt or
oversized PNG, or a missing field, being bad data (what ``decode_png_pair`` does to each sample)."""
from typing import Any, Dict, Optional, Tuple

from ..policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .failures import BadSample
from .fields import MissingFieldError, describe_field, field_named
from .png_decoders import MAX_PIXELS, check_decoder_name, check_max_pixels, decode_png

__all__ = ["decode_png_pair", "pair_decoded"]


def _pair_fields(sample: Dict[str, Any], image_key: str, label_key: str) -> Tuple[str, str]:
    """The image and label fields; a missing one (bad data) only once neither key matches several (a caller's
    mistake, which always raises)."""
    found, missing = [], []
    for key, role in ((image_key, "image"), (label_key, "label")):
        try:
            found.append(field_named(sample, key, role))
        except MissingFieldError as error:
            missing.append(error)
    if missing:
        raise BadSample(missing[0], "incomplete_samples")
    image_field, label_field = found
    if image_field == label_field:
        raise ValueError(f"sample {sample.get('__key__')!r} in {sample.get('__url__')!r}: image and label keys both "
                         f"match field {image_field!r}")
    return image_field, label_field


def pair_decoded(
    sample: Dict[str, Any], image_key: str = "image", label_key: str = "label", decoder: str = "auto",
    max_pixels: Optional[int] = MAX_PIXELS,
) -> Dict[str, Any]:
    """The decoded copy of ``sample``; raises :class:`BadSample` for bad data, the errors of
    :func:`decode_png_pair` for the rest."""
    image_field, label_field = _pair_fields(sample, image_key, label_key)
    decoded = dict(sample)
    # One after the other: libdeflate releases the GIL and pyspng does not, but with a DataLoader worker per
    # core, decoding the two in threads adds nothing.
    for field, mode in ((image_field, "image"), (label_field, "label")):
        try:
            decoded[field] = decode_png(sample[field], mode=mode, decoder=decoder, max_pixels=max_pixels)
        except TypeError as error:
            raise TypeError(f"{describe_field(sample, field)}: {error}") from error
        except MemoryError as error:  # not bad data: the PNG was within max_pixels
            raise MemoryError(f"{describe_field(sample, field)}: {error}") from (error.__cause__ or error)
        except ValueError as error:
            raise BadSample(with_message(error, f"{describe_field(sample, field)}: {error}"), "corrupt_images") from None
    return decoded


def decode_png_pair(
    sample: Dict[str, Any],
    image_key: str = "image",
    label_key: str = "label",
    decoder: str = "auto",
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
    max_pixels: Optional[int] = MAX_PIXELS,
) -> Optional[Dict[str, Any]]:
    """A copy of ``sample`` with its image field decoded to ``(3, H, W)`` and its label field to ``(H, W)``.

    Bad data is counted in ``error_counts``: a corrupt, truncated or unsupported PNG, or one of more than
    ``max_pixels`` pixels (see :func:`decode_png`), as ``corrupt_images``; a sample lacking the image or the
    label field as ``incomplete_samples``. ``on_error="raise"`` raises, ``"skip"`` and ``"warn"`` (which also
    warns and logs) return ``None``.

    Raises:
        ValueError: an unknown ``decoder`` or ``on_error``, a ``max_pixels`` that is not a positive int or
            ``None``, a key matching several fields, or the same field as the other key; or, under
            ``on_error="raise"``, bad data; the message names the sample's URL and key (and the field)
        TypeError: a field is not bytes
        MemoryError: no memory to decode a PNG, under any ``on_error``; the message names the sample, URL
            and field, the allocator's error as ``__cause__``
    """
    # Checked here, as decode_png's ValueError for them would pass for bad data.
    check_decoder_name(decoder)
    check_on_error(on_error)
    check_max_pixels(max_pixels)
    try:
        return pair_decoded(sample, image_key, label_key, decoder, max_pixels)
    except BadSample as bad:
        counts = error_counts if error_counts is not None else ErrorCounts()
        handle_data_error(bad.error, kind=bad.kind, on_error=on_error, error_counts=counts)
        return None
