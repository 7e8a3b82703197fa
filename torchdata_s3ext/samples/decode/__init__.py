"""Decoding: a sample's encoded fields to tensors, one module per job, so that a new format is new modules.

PNG: ``png`` reads the format (chunk layout, CRCs, header), ``png_stored`` is the libdeflate half of the
``"libdeflate"`` decoder, ``png_decoders`` holds the decoders and ``decode_png``, and ``png_pair`` the
``decode_png_pair`` datapipe, whose ``failures`` says when nothing decodes. Beside them, ``fields`` finds the
field a key names, and ``optional`` imports the native libraries the decoders prefer. How the decoders work
and how fast they are: docs/decoding.md.
"""
from .failures import GIVE_UP_AFTER
from .fields import fields_matching
from .png import PngHeader, read_png_header
from .png_decoders import DECODERS, MAX_PIXELS, check_decoder_name, decode_png
from .png_pair import PngPairDecoderIterDataPipe, decode_png_pair

__all__ = [
    "DECODERS",
    "GIVE_UP_AFTER",
    "MAX_PIXELS",
    "PngHeader",
    "PngPairDecoderIterDataPipe",
    "check_decoder_name",
    "decode_png",
    "decode_png_pair",
    "fields_matching",
    "read_png_header",
]
