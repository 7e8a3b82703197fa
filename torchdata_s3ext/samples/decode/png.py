"""The PNG format: the chunk layout of a PNG file, read with every chunk's CRC checked, and its IHDR fields.

Every decoder reads the layout first, as libspng does not check CRCs (a flipped byte would give wrong
pixels, not an error); the CRC-32 is libdeflate's when ``deflate`` imports, else zlib's.
"""
import struct
import zlib
from typing import Any, List, NamedTuple

from . import optional

__all__ = [
    "GREY",
    "GREY_ALPHA",
    "PALETTE",
    "RGB",
    "RGBA",
    "PngHeader",
    "PngLayout",
    "crc32",
    "read_png_header",
    "read_png_layout",
    "scanline_size",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: IHDR colour types
GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
_CHANNELS = {GREY: 1, RGB: 3, PALETTE: 1, GREY_ALPHA: 2, RGBA: 4}
_COLOR_TYPE_NAMES = {GREY: "greyscale", RGB: "RGB", PALETTE: "palette", GREY_ALPHA: "greyscale+alpha", RGBA: "RGBA"}


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    color_type: int

    def describe(self) -> str:
        return f"{self.bit_depth}-bit {_COLOR_TYPE_NAMES.get(self.color_type, f'color type {self.color_type}')}"


class PngLayout(NamedTuple):
    header: PngHeader
    interlaced: bool
    head_end: int  # where the first IDAT chunk starts: the signature and the chunks before it end there
    idat: List[memoryview]  # the data of the IDAT chunks, in order
    idat_consecutive: bool  # no other chunk between two IDAT chunks


def crc32(data: Any, value: int = 0) -> int:
    """The CRC-32 of ``data`` continuing ``value``: libdeflate's when it imports (several times faster), else zlib's."""
    libdeflate = optional.libdeflate
    return libdeflate.crc32(data, value) if libdeflate is not None else zlib.crc32(data, value)


def scanline_size(header: PngHeader) -> int:
    """Bytes of a non-interlaced PNG's inflated pixel data: per row, a filter-type byte and the packed samples."""
    row_bits = header.width * _CHANNELS.get(header.color_type, 0) * header.bit_depth
    return header.height * (1 + (row_bits + 7) // 8)


def read_png_layout(data: bytes) -> PngLayout:
    """The header and IDAT chunks of a PNG, after checking its signature and the CRC of every chunk up to ``IEND``.

    Raises:
        ValueError: not a PNG, a truncated chunk, a CRC mismatch, or a first chunk that is not IHDR
    """
    view = memoryview(data)
    if bytes(view[:8]) != _SIGNATURE:
        raise ValueError("not a PNG (bad signature)")
    header, interlaced, head_end, idat, consecutive, previous_type = None, False, 0, [], True, b""
    position = 8
    while position < len(view):
        if position + 12 > len(view):
            raise ValueError(f"truncated PNG: incomplete chunk at byte {position}")
        length, chunk_type = struct.unpack_from(">I4s", view, position)
        end = position + 12 + length
        if end > len(view):
            raise ValueError(f"truncated PNG: {chunk_type!r} chunk at byte {position} needs {length} bytes")
        (crc,) = struct.unpack_from(">I", view, end - 4)
        if crc32(view[position + 4:end - 4]) != crc:
            raise ValueError(f"corrupt PNG: CRC mismatch in {chunk_type!r} chunk at byte {position}")
        if header is None:
            if chunk_type != b"IHDR" or length != 13:
                raise ValueError(f"corrupt PNG: first chunk is {chunk_type!r}, not IHDR")
            header = PngHeader(*struct.unpack_from(">IIBB", view, position + 8))
            interlaced = view[position + 20] != 0
        if chunk_type == b"IDAT":
            if not idat:
                head_end = position
            elif previous_type != b"IDAT":
                consecutive = False
            idat.append(view[position + 8:end - 4])
        if chunk_type == b"IEND":
            break
        previous_type = chunk_type
        position = end
    if header is None:
        raise ValueError("truncated PNG: no IHDR chunk")
    return PngLayout(header, interlaced, head_end, idat, consecutive)


def read_png_header(data: bytes) -> PngHeader:
    """The IHDR fields of a PNG, after checking its signature and the CRC of every chunk up to ``IEND``.

    Raises:
        ValueError: not a PNG, a truncated chunk, or a CRC mismatch
    """
    return read_png_layout(data).header
