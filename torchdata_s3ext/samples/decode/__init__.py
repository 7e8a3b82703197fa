"""Decoding: a sample's encoded fields to tensors, one module per job, so that a new format is new modules.

PNG: ``png`` reads the format (chunk layout, CRCs, header), ``png_stored`` is the libdeflate half of the
``"libdeflate"`` decoder, ``png_decoders`` holds the decoders and ``decode_png``, and ``png_pair`` decodes a
sample's image/label pair. The ``decode`` stage (``stage``) applies either to each sample; ``failures`` says
when nothing decodes. Beside them, ``fields`` finds the
field a key names, and ``optional`` imports the native libraries the decoders prefer.

Every field by its extension (``decode_samples``, webdataset's ``.decode()``): ``samples`` holds
:func:`decode_sample`, ``images`` decodes any image format (``jpeg`` reads JPEGs, ``pixels`` holds the pixel
limit and PIL's decode), ``field_handlers`` the decoders of the other fields. How the decoders work
and how fast they are: docs/decoding.md.
"""
from .failures import GIVE_UP_AFTER
from .field_handlers import FIELD_HANDLERS
from .fields import fields_matching
from .images import IMAGE_EXTENSIONS, decode_image
from .jpeg import JPEG_DECODERS, decode_jpeg, read_jpeg_header
from .png import PngHeader, read_png_header
from .png_decoders import DECODERS, MAX_PIXELS, check_decoder_name, decode_png
from .png_pair import decode_png_pair, pair_decoded
from .samples import LABEL_KEYS, SampleDecoding, decode_sample, fields_decoded
from .stage import Decoder

__all__ = [
    "DECODERS",
    "Decoder",
    "FIELD_HANDLERS",
    "GIVE_UP_AFTER",
    "IMAGE_EXTENSIONS",
    "JPEG_DECODERS",
    "LABEL_KEYS",
    "MAX_PIXELS",
    "PngHeader",
    "SampleDecoding",
    "check_decoder_name",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "decode_png_pair",
    "decode_sample",
    "fields_decoded",
    "fields_matching",
    "pair_decoded",
    "read_jpeg_header",
    "read_png_header",
]
