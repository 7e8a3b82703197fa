"""The first half of the ``"libdeflate"`` decoder: a copy of a PNG whose pixel data libdeflate has inflated,
put back in stored (uncompressed) deflate blocks, for libspng to unfilter.

Inflating is most of libspng's time (docs/decoding.md), and libdeflate inflates about twice as fast as the
zlib libspng uses, but libspng takes no inflated data. So libdeflate inflates the IDAT stream (checking its
Adler-32), and libspng reads a copy of the PNG whose IDAT chunks hold the scanlines in stored blocks, with
their CRCs and Adler-32 right, which zlib copies instead of decoding.
Interlaced PNGs, PNGs whose IDAT chunks are not consecutive, and PNGs whose pixel data inflates to more than
the deflate package takes (``fits_stored_path``) are not for this path.
"""
import struct
import threading
from typing import Any, List

from . import optional
from .png import PngHeader, PngLayout, crc32, scanline_size

__all__ = ["MAX_INFLATED", "fits_stored_path", "stored_copy"]

#: The most bytes the deflate package inflates to: it cuts the size it is given to 32 bits, so a 60000 x 60000
#: RGB PNG (10.8 GB of scanlines) would get a 2.4 GB buffer and fail only after filling it.
MAX_INFLATED = (1 << 32) - 1

_STORED_BLOCK = 65535  # the most bytes a stored (uncompressed) deflate block holds
_BLOCKS_PER_IDAT = 256  # IDAT chunks of 16 MiB in the rewritten PNG, well below libspng's limits
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"

_reused = threading.local()
_MAX_REUSED = 64 << 20


def _idat_stream(idat: List[memoryview]) -> Any:
    """The IDAT chunks' data as one buffer; this thread's reused buffer, as a fresh one costs page faults."""
    size = sum(len(chunk) for chunk in idat)
    if len(idat) == 1 or size > _MAX_REUSED:
        return idat[0] if len(idat) == 1 else b"".join(idat)
    buffer = getattr(_reused, "idat", None)
    if buffer is None or len(buffer) < size:
        buffer = _reused.idat = bytearray(size)
    stream = memoryview(buffer)[:size]
    position = 0
    for chunk in idat:
        stream[position:position + len(chunk)] = chunk
        position += len(chunk)
    return stream


def _stored_png(head: memoryview, scanlines: bytearray) -> bytes:
    """A PNG of ``head`` (signature and chunks up to the first IDAT) and IDAT chunks holding ``scanlines``
    in stored deflate blocks."""
    size = len(scanlines)
    view = memoryview(scanlines)
    parts: List[Any] = [head]
    per_chunk = _STORED_BLOCK * _BLOCKS_PER_IDAT
    for first in range(0, size, per_chunk):
        pieces: List[Any] = [b"\x78\x01"] if first == 0 else []  # zlib header: deflate, 32 KiB window
        last = min(first + per_chunk, size)
        for start in range(first, last, _STORED_BLOCK):
            block = view[start:start + _STORED_BLOCK]
            pieces += [struct.pack("<BHH", start + len(block) == size, len(block), len(block) ^ 0xFFFF), block]
        if last == size:
            pieces.append(struct.pack(">I", optional.libdeflate.adler32(view)))
        crc = crc32(b"IDAT")
        for piece in pieces:
            crc = crc32(piece, crc)
        parts += [struct.pack(">I4s", sum(len(piece) for piece in pieces), b"IDAT"), *pieces, struct.pack(">I", crc)]
    parts.append(_IEND)
    return b"".join(parts)


def fits_stored_path(header: PngHeader) -> bool:
    """Whether the pixel data of a PNG with this header is small enough for the deflate package."""
    return scanline_size(header) <= MAX_INFLATED


def stored_copy(data: bytes, layout: PngLayout) -> bytes:
    """``data``, a non-interlaced PNG with consecutive IDAT chunks, with its pixel data inflated by libdeflate
    and stored uncompressed.

    Raises:
        ValueError: the pixel data does not inflate (bad data, a wrong Adler-32) to the header's size (the
            deflate error as ``__cause__``), or would inflate to more than ``MAX_INFLATED`` bytes
        MemoryError: no memory for the inflated pixel data
    """
    size = scanline_size(layout.header)
    if size > MAX_INFLATED:  # checked before the deflate package cuts the size to 32 bits
        raise ValueError(f"PNG pixel data of {size:,} bytes is over the deflate package's {MAX_INFLATED:,}")
    try:
        scanlines = optional.libdeflate.zlib_decompress(_idat_stream(layout.idat), size)
    except MemoryError:
        raise
    except Exception as error:  # deflate.DeflateError: bad data, a wrong Adler-32, or more than `size` bytes
        raise ValueError(f"corrupt PNG: compressed pixel data: {error}") from error
    if len(scanlines) != size:
        raise ValueError(f"corrupt PNG: pixel data inflates to {len(scanlines)} bytes, not {size}")
    png = _stored_png(memoryview(data)[:layout.head_end], scanlines)
    del scanlines  # freed before libspng allocates: fewer fresh pages
    # Kept until this thread's next decode: freeing it after libspng's decode would leave megabytes free at
    # the top of the heap, which glibc hands back to the system, and the next decode would fault them in again
    # (about 1,500 page faults, 2-3 ms, per 1024x1024 RGB image on the 2-core machine).
    _reused.png = png if len(png) <= _MAX_REUSED else None
    return png
