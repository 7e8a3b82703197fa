"""The decoding pipes: ``decode_png_pair`` (the PNG image/label pair, on its fast path) and ``decode_samples``
(every field by its extension)."""
import functools
from typing import Any, Iterable, Mapping, Optional

from ..epochs.clock import EpochClock
from ..samples.decode import Decoder, SampleDecoding, fields_decoded, pair_decoded
from ..samples.decode.failures import GIVE_UP_AFTER, check_give_up_after
from ..samples.decode.png_decoders import MAX_PIXELS, check_decoder_name, check_max_pixels
from ..samples.decode.samples import LABEL_KEYS, Handler
from ..samples.policy import ErrorCounts, check_on_error
from ..stage import Stage
from .datapipes import Pipe, functional

__all__ = ["PngPairDecoderIterDataPipe", "SampleDecoderIterDataPipe"]


@functional("decode_png_pair")
class PngPairDecoderIterDataPipe(Pipe):
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
            :class:`ErrorCounts` by default. The pipe's ``error_counts`` attribute, added up over the processes
            that read the pipe
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
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
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
        source_datapipe: Any,
        image_key: str = "image",
        label_key: str = "label",
        decoder: str = "auto",
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
        max_pixels: Optional[int] = MAX_PIXELS,
        give_up_after: Optional[int] = GIVE_UP_AFTER,
    ) -> None:
        super().__init__(source_datapipe)
        self.image_key: str = image_key
        self.label_key: str = label_key
        self.decoder: str = check_decoder_name(decoder)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()
        self.max_pixels: Optional[int] = check_max_pixels(max_pixels)
        self.give_up_after: Optional[int] = check_give_up_after(give_up_after)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        decode = functools.partial(pair_decoded, image_key=self.image_key, label_key=self.label_key,
                                   decoder=self.decoder, max_pixels=self.max_pixels)
        return Decoder(self._source_stage(clock), decode, self.on_error, self.error_counts, self.give_up_after,
                       "decode_png_pair")

    def __len__(self) -> int:
        if self.on_error != "raise":  # skipped samples make the length unknown in advance
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return len(self.source_datapipe)


@functional("decode_samples")
class SampleDecoderIterDataPipe(Pipe):
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
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
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
        source_datapipe: Any,
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
        super().__init__(source_datapipe)
        self.decoding = SampleDecoding(image_mode, label_keys, handlers or {}, max_pixels, png_decoder, jpeg_decoder)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()
        self.give_up_after: Optional[int] = check_give_up_after(give_up_after)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        decode = functools.partial(fields_decoded, decoding=self.decoding)
        return Decoder(self._source_stage(clock), decode, self.on_error, self.error_counts, self.give_up_after,
                       "decode_samples")

    def __len__(self) -> int:
        if self.on_error != "raise":  # skipped samples make the length unknown in advance
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return len(self.source_datapipe)
