"""The ``decode_png_pair`` datapipe: the PNG image and label bytes of a sample in, uint8 tensors out, a corrupt
PNG being bad data."""
from typing import Any, Dict, Iterator, Optional

from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from ..policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .fields import field_named
from .png_decoders import check_decoder_name, decode_png

__all__ = ["PngPairDecoderIterDataPipe", "decode_png_pair"]


def decode_png_pair(
    sample: Dict[str, Any],
    image_key: str = "image",
    label_key: str = "label",
    decoder: str = "auto",
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Optional[Dict[str, Any]]:
    """A copy of ``sample`` with its image field decoded to ``(3, H, W)`` and its label field to ``(H, W)``.

    A corrupt, truncated or unsupported PNG is bad data, counted in ``error_counts`` as ``corrupt_images``:
    ``on_error="raise"`` raises, ``"skip"`` and ``"warn"`` (which also warns and logs) return ``None``.

    Raises:
        ValueError: a key matches no field, several, or the same field as the other key; or, under
            ``on_error="raise"``, a PNG is bad (see :func:`decode_png`); the message names the sample's
            URL and key
        TypeError: a field is not bytes
    """
    url, sample_key = sample.get("__url__"), sample.get("__key__")
    image_field = field_named(sample, image_key, "image")
    label_field = field_named(sample, label_key, "label")
    if image_field == label_field:
        raise ValueError(f"sample {sample_key!r} in {url!r}: image and label keys both match field {image_field!r}")
    decoded = dict(sample)
    # One after the other: libdeflate releases the GIL and pyspng does not, but with a DataLoader worker per
    # core, decoding the two in threads adds nothing.
    for field, mode in ((image_field, "image"), (label_field, "label")):
        try:
            decoded[field] = decode_png(sample[field], mode=mode, decoder=decoder)
        except TypeError as error:
            raise TypeError(f"sample {sample_key!r} in {url!r}, field {field!r}: {error}") from error
        except ValueError as error:
            bad_png = with_message(error, f"sample {sample_key!r} in {url!r}, field {field!r}: {error}")
            counts = error_counts if error_counts is not None else ErrorCounts()
            handle_data_error(bad_png, kind="corrupt_images", on_error=on_error, error_counts=counts)
            return None
    return decoded


@functional_datapipe("decode_png_pair")
class PngPairDecoderIterDataPipe(IterDataPipe[Dict[str, Any]]):
    r"""
    Decodes the PNG image and the PNG label of each WebDataset sample to uint8 tensors: the image to RGB
    ``(3, H, W)``, the label to ``(H, W)``; other fields pass through (functional name: ``decode_png_pair``).

    Args:
        source_datapipe: samples as ``group_wds_samples()`` yields them
        image_key: names the image field (see the Note); ``"image"`` matches ``image`` and ``image.png``
        label_key: names the label field, likewise
        decoder: ``"auto"`` (the fastest that imports: ``"libdeflate"``, else ``"pyspng"``, else PIL),
            ``"libdeflate"`` (libdeflate inflates, pyspng unfilters), ``"pyspng"`` or ``"pil"``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``: what a sample with a corrupt, truncated or
            unsupported PNG does: raise, or be dropped (silently, or with a ``DataErrorWarning`` and a log
            record on logger ``"torchdata_s3ext"``), the other samples passing unchanged
        error_counts: where to count such samples (``corrupt_images``); a new :class:`ErrorCounts` by
            default. The pipe's ``error_counts`` attribute; counts are per process, each DataLoader worker
            counts its own

    Note:
        A key ``K`` matches a field that is ``K``, starts with ``K.`` or ends with ``.K``: ``"image"``
        matches ``image`` and ``image.png``, ``"seg.png"`` matches ``x.seg.png``. Each key must match
        exactly one field, else ``ValueError`` naming the URL, the key and the sample's fields.

        Images: greyscale is repeated to 3 channels, alpha dropped, palettes mapped to RGB. Labels must be
        8-bit greyscale (values kept) or palette (indices kept); an RGB label raises ``ValueError``, and so
        does any 16-bit PNG. Pixels equal PIL's; corrupt or truncated PNGs (CRCs are checked, as libspng
        does not; libdeflate also checks the Adler-32) raise ``ValueError`` naming the URL and key, with the
        decoder's error as ``__cause__``; under ``on_error="skip"``/``"warn"`` those samples are dropped instead.

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
    ) -> None:
        self.source_datapipe = source_datapipe
        self.image_key: str = image_key
        self.label_key: str = label_key
        self.decoder: str = check_decoder_name(decoder)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for sample in self.source_datapipe:
            decoded = decode_png_pair(
                sample, self.image_key, self.label_key, self.decoder, self.on_error, self.error_counts
            )
            if decoded is not None:
                yield decoded

    def __len__(self) -> int:
        if self.on_error != "raise":  # skipped samples make the length unknown in advance
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return len(self.source_datapipe)
