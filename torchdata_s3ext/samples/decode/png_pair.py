"""The ``decode_png_pair`` datapipe: the PNG image and label bytes of a sample in, uint8 tensors out, a corrupt
or oversized PNG, or a missing field, being bad data."""
from typing import Any, Dict, Iterator, Optional, Tuple

from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from ..positions import PassesCheckpointOn
from ..policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .failures import GIVE_UP_AFTER, BadSample, check_give_up_after, decoded_under_policy
from .fields import MissingFieldError, describe_field, field_named
from .png_decoders import MAX_PIXELS, check_decoder_name, check_max_pixels, decode_png

__all__ = ["PngPairDecoderIterDataPipe", "decode_png_pair"]


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


def _decode_pair(
    sample: Dict[str, Any], image_key: str, label_key: str, decoder: str, max_pixels: Optional[int]
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
        return _decode_pair(sample, image_key, label_key, decoder, max_pixels)
    except BadSample as bad:
        counts = error_counts if error_counts is not None else ErrorCounts()
        handle_data_error(bad.error, kind=bad.kind, on_error=on_error, error_counts=counts)
        return None


@functional_datapipe("decode_png_pair")
class PngPairDecoderIterDataPipe(PassesCheckpointOn, IterDataPipe[Dict[str, Any]]):
    r"""
    Decodes the PNG image and the PNG label of each WebDataset sample to uint8 tensors: the image to RGB
    ``(3, H, W)``, the label to ``(H, W)``; other fields pass through (functional name: ``decode_png_pair``).

    Args:
        source_datapipe: samples as ``group_wds_samples()`` yields them
        image_key: names the image field (see the Note); ``"image"`` matches ``image`` and ``image.png``
        label_key: names the label field, likewise
        decoder: ``"auto"`` (the fastest that imports: ``"libdeflate"``, else ``"pyspng"``, else PIL),
            ``"libdeflate"`` (libdeflate inflates, pyspng unfilters), ``"pyspng"`` or ``"pil"``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``: what a sample with bad data does (a
            corrupt, truncated, unsupported or oversized PNG, or a missing image or label field): raise, or be
            dropped (silently, or with a ``DataErrorWarning`` and a log record on logger
            ``"torchdata_s3ext"``), the other samples passing unchanged; but see "Nothing decodes" below
        error_counts: where to count such samples (``corrupt_images``, ``incomplete_samples``); a new
            :class:`ErrorCounts` by default. The pipe's ``error_counts`` attribute; counts are per process,
            each DataLoader worker counts its own
        max_pixels: the most pixels (width x height) of a PNG, checked on its header before anything is
            allocated; a larger PNG is bad data. ``MAX_PIXELS`` (89,478,485, PIL's default limit, a 256 MiB
            RGB image) by default; ``None`` for no limit
        give_up_after: under ``"skip"``/``"warn"``, raise once this many samples (100 by default) have
            failed, from two shards or more, before any decoded; ``None`` never raises

    Note:
        A key ``K`` matches a field that is ``K``, starts with ``K.`` or ends with ``.K``: ``"image"``
        matches ``image`` and ``image.png``, ``"seg.png"`` matches ``x.seg.png``. Each key must match
        exactly one field; the errors (below) name the URL, the key and the sample's fields.

        Images: greyscale is repeated to 3 channels, alpha dropped, palettes mapped to RGB. Labels must be
        8-bit greyscale (values kept) or palette (indices kept); an RGB label raises ``ValueError``, and so
        does any 16-bit PNG. Pixels equal PIL's; corrupt or truncated PNGs (CRCs are checked, as libspng
        does not; libdeflate also checks the Adler-32) raise ``ValueError`` naming the URL and key, with the
        decoder's error as ``__cause__``; under ``on_error="skip"``/``"warn"`` those samples are dropped instead.
        A sample lacking the image or label field is dropped likewise (``incomplete_samples``); a key matching
        several fields, or both keys the same field, raises ``ValueError`` under any ``on_error``. Running out
        of memory raises ``MemoryError`` naming the sample, under any ``on_error``.

        Nothing decodes: under ``"skip"``/``"warn"``, at the end of each pass over the source, each shard of
        which every sample failed gets a ``DataErrorWarning`` and a log record (even under ``"skip"``) naming
        the shard, the count and the first error (at the end, as a shuffle buffer interleaves shards). A pass
        raises ``ValueError`` naming the first error when nothing has decoded and either ``give_up_after``
        samples from two shards or more have failed, or the pass ends: a JPEG data set, or wrong keys, raise
        rather than give empty epochs. One bad shard among good ones only warns.

        How fast each decoder is, against plain PIL, and how to measure it: docs/decoding.md.

    Example:
        >>> import io
        >>> import numpy as np
        >>> import torchdata_s3ext
        >>> from PIL import Image
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> def png(pixels):
        ...     out = io.BytesIO()
        ...     Image.fromarray(pixels).save(out, format="PNG")
        ...     return out.getvalue()
        >>> sample = {"__key__": "0", "__url__": "s3://bucket/shard-000000.tar", "cls": b"3",
        ...           "image": png(np.zeros((4, 6, 3), np.uint8)), "label": png(np.ones((4, 6), np.uint8))}
        >>> decoded = next(iter(IterableWrapper([sample]).decode_png_pair()))
        >>> decoded["image"].shape, decoded["label"].shape, decoded["label"].dtype, decoded["cls"]
        (torch.Size([3, 4, 6]), torch.Size([4, 6]), torch.uint8, b'3')
    """

    def __init__(
        self,
        source_datapipe: IterDataPipe[Dict[str, Any]],
        image_key: str = "image",
        label_key: str = "label",
        decoder: str = "auto",
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
        max_pixels: Optional[int] = MAX_PIXELS,
        give_up_after: Optional[int] = GIVE_UP_AFTER,
    ) -> None:
        self.source_datapipe = source_datapipe
        self.image_key: str = image_key
        self.label_key: str = label_key
        self.decoder: str = check_decoder_name(decoder)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()
        self.max_pixels: Optional[int] = check_max_pixels(max_pixels)
        self.give_up_after: Optional[int] = check_give_up_after(give_up_after)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        yield from decoded_under_policy(
            self.source_datapipe,
            lambda sample: _decode_pair(sample, self.image_key, self.label_key, self.decoder, self.max_pixels),
            self.on_error, self.error_counts, self.give_up_after, "decode_png_pair",
        )

    def __len__(self) -> int:
        if self.on_error != "raise":  # skipped samples make the length unknown in advance
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return len(self.source_datapipe)
