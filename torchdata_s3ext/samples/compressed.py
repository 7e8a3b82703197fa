"""Compressed shards: the compression a shard's first bytes name, and its decompressed stream, whose store
failures are kept apart from bad compressed data (a decompressor raises ``OSError`` for both)."""
import bz2
import gzip
import lzma
import zlib
from typing import IO, List, Optional

__all__ = ["BAD_COMPRESSED_DATA", "StoreFailure", "compression_of", "decompressed", "first_bytes"]

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_DECOMPRESSORS = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}
#: what a decompressor raises on bad data (the store's own failures reach the reader as :class:`StoreFailure`)
BAD_COMPRESSED_DATA = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


class StoreFailure(Exception):
    """A failure of the store under a decompressor (``error``), kept apart from bad compressed data."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _StoreReads:
    """A stream whose read failures come out as :class:`StoreFailure`, so that a decompressor's ``OSError``
    (bad data) and the store's (a lost connection) are never confused."""

    def __init__(self, stream: IO[bytes], prefix: bytes) -> None:
        self._stream, self._prefix = stream, prefix

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        try:
            return self._stream.read(size)
        except Exception as error:
            raise StoreFailure(error) from error

    def readable(self) -> bool:
        return True


def first_bytes(stream: IO[bytes], size: int) -> bytes:
    """The first ``size`` bytes of ``stream`` (fewer where it ends)."""
    pieces: List[bytes] = []
    got = 0
    while got < size:
        piece = stream.read(size - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def compression_of(first: bytes) -> Optional[str]:
    """The compression whose magic bytes ``first`` starts with (``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"``),
    or ``None``.

    >>> compression_of(b"\\x1f\\x8b\\x08"), compression_of(b"shard-000000.image")
    ('gzip', None)
    """
    return next((name for magic, name in _MAGIC if first.startswith(magic)), None)


def decompressed(compression: str, stream: IO[bytes], first: bytes) -> Optional[IO[bytes]]:
    """The decompressed bytes of ``stream``, whose first bytes ``first`` were read already; ``None`` for a
    compression that is not read (``zstd``: no decompressor in the standard library)."""
    if compression not in _DECOMPRESSORS:
        return None
    return _DECOMPRESSORS[compression](fileobj=_StoreReads(stream, first), mode="rb")  # type: ignore[return-value]
