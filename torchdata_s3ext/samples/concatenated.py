"""Tar archives one after another in one stream (SageMaker Pipe Mode): their members and samples, archive by
archive, to the end of the stream.

A plain tar reader stops at the first archive's end-of-archive marker. Here each archive is read by
``tar.tar_members`` and checked as it checks one archive, its members named ``<stream_url>#<ordinal>``
(``pipe-mode:/opt/ml/input/data/train_0#3`` is the fourth archive), and then the next one is read. The stream
has no boundaries of its own, so they come from tar's: an archive ends with its end-of-archive marker, two
zero blocks, then any zero padding; the next archive begins at the first non-zero byte after it (what
``tar --ignore-zeros`` reads).

A damaged archive (not a tar, a damaged header, a compressed one: these are not supported) is one
``DamagedShard``, after its members before the damage; the reader then goes on at the next tar header
(right checksum, ``ustar`` magic, at any byte offset) that follows two zero blocks, dropping what lies
between. So after a damaged tar the next one is found; the archive right after a non-tar object (no zero
blocks between them) is lost with it. A stream that ends inside an archive ends with that archive damaged.
"""
import tarfile
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Union

from .grouping import group_by_keys
from .policy import ErrorCounts
from .tar import DamagedShard, Member, end_of_archive_problem, tar_members

__all__ = ["archive_members", "archive_samples"]

_BLOCK = tarfile.BLOCKSIZE
_MARKER = 2 * _BLOCK  # the end-of-archive marker
_MAGIC, _MAGIC_OFFSET = b"ustar", 257
_SCAN_CHUNK = 1 << 16
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


class _Reader:
    """The stream read forward, ``read(size)`` giving ``size`` bytes unless it ends, with bytes put back."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._put_back = b""

    def read(self, size: int) -> bytes:
        parts: List[bytes] = [self._put_back[:size]]
        self._put_back = self._put_back[size:]
        wanted = size - len(parts[0])
        while wanted > 0:
            data = self._stream.read(wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        return b"".join(parts)

    def put_back(self, data: bytes) -> None:
        self._put_back = data + self._put_back


class _Archive:
    """One archive of the stream, as ``tar_members`` reads it. It reads in blocks (``archive_end`` set), so the
    last block read is the one ``tarfile`` took for the end: :meth:`archive_end` checks it again, with the zeros
    after it, and leaves the next archive unread."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self._position = 0
        self._last_block = b""
        self._ended = False
        self._replay: Optional[bytes] = None
        self._zero_blocks = 0  # after the end: the zero blocks read, the replayed one included

    def read(self, size: int) -> bytes:
        if self._ended:
            return self._tail_block()
        data = self._reader.read(size)
        self._position += len(data)
        self._last_block = (self._last_block + data)[-_BLOCK:]
        return data

    def archive_end(self, position: int, data_end: int) -> Optional[str]:
        """What ``tar.end_of_archive_problem`` finds wrong at this archive's end; ``position`` is ``tarfile``'s."""
        if position != self._position:
            return f"the tar reader is at byte {position} but has read {self._position} bytes"
        self._ended = True
        return end_of_archive_problem(self, data_end, rewind=True)

    # What end_of_archive_problem() uses after the end: tell, one block back, then reads to a non-zero byte.
    def tell(self) -> int:
        return self._position

    def seek(self, offset: int) -> None:
        if offset != self._position - _BLOCK:
            raise ValueError(f"an archive of a stream can go back to byte {self._position - _BLOCK} only")
        self._replay = self._last_block

    def _tail_block(self) -> bytes:
        if self._replay is not None:
            block, self._replay = self._replay, None
        else:
            block = self._reader.read(_BLOCK)
            if not block:
                return block
            if block.strip(b"\0") and self._zero_blocks * _BLOCK >= _MARKER:
                self._reader.put_back(block)  # the next archive begins
                return b""
        self._zero_blocks += not block.strip(b"\0")
        return block


def _is_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _next_archive_start(window: bytes) -> Optional[int]:
    """Where in ``window`` the first tar header after two zero blocks begins, or ``None``."""
    found = window.find(_MAGIC, _MARKER + _MAGIC_OFFSET)
    while found >= 0:
        start = found - _MAGIC_OFFSET
        header = window[start:start + _BLOCK]
        if len(header) == _BLOCK and not window[start - _MARKER:start].strip(b"\0") and _is_header(header):
            return start
        found = window.find(_MAGIC, found + 1)
    return None


def _skip_to_next_archive(reader: _Reader) -> None:
    """Read on to the next archive after a damaged one (see the module docstring), or to the end."""
    window = b""
    while True:
        chunk = reader.read(_SCAN_CHUNK)
        if not chunk:
            return
        window += chunk
        start = _next_archive_start(window)
        if start is not None:
            reader.put_back(window[start:])
            return
        # What a header cut by the chunk's end needs: itself and the marker before it.
        window = window[-(_MARKER + _BLOCK):]


def archive_members(stream_url: str, stream: IO[bytes]) -> Iterator[Union[Member, DamagedShard]]:
    """The members of the tar archives in ``stream``, one after another, as ``tar.tar_members`` gives them
    for each: ``(f"{stream_url}#{ordinal}", member_name, data)`` and a :class:`DamagedShard` after the members
    of a damaged archive, read to the end of the stream.

    >>> import io
    >>> from torchdata_s3ext.testing import seed_samples, tar_bytes
    >>> stream = io.BytesIO(tar_bytes(seed_samples(1)) + tar_bytes(seed_samples(1, first_index=1)))
    >>> [(url, name) for url, name, _ in archive_members("pipe-mode:/fifo", stream)]  # doctest: +NORMALIZE_WHITESPACE
    [('pipe-mode:/fifo#0', 'sample_00000000.image'), ('pipe-mode:/fifo#0', 'sample_00000000.label'),
     ('pipe-mode:/fifo#1', 'sample_00000001.image'), ('pipe-mode:/fifo#1', 'sample_00000001.label')]
    """
    reader = _Reader(stream)
    ordinal = 0
    while True:
        first_block = reader.read(_BLOCK)
        if not first_block:
            return
        reader.put_back(first_block)
        archive_url = f"{stream_url}#{ordinal}"
        ordinal += 1
        compression = next((name for magic, name in _COMPRESSED.items() if first_block.startswith(magic)), None)
        if compression is not None:
            problem = f"a {compression}-compressed archive: Pipe Mode reads uncompressed tar archives only"
            yield DamagedShard(archive_url, tarfile.ReadError(problem))
            reader.read(_BLOCK)
            _skip_to_next_archive(reader)
            continue
        archive = _Archive(reader)
        damaged = False
        for item in tar_members(archive_url, archive, archive_end=archive.archive_end):
            damaged = damaged or isinstance(item, DamagedShard)
            yield item
        if damaged:
            _skip_to_next_archive(reader)


def archive_samples(
    stream_url: str,
    stream: IO[bytes],
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Iterator[Dict[str, Any]]:
    """The WebDataset samples of the tar archives in ``stream``, archive after archive to its end, as
    ``shards.shard_samples`` gives them for one: a damaged archive is bad data (``bad_shards``), and under
    ``on_error="skip"`` or ``"warn"`` its samples before the damage are kept and the next archive is read.
    ``__url__`` is ``f"{stream_url}#{ordinal}"``; a sample never spans two archives."""
    return group_by_keys(archive_members(stream_url, stream), required_fields, on_error, error_counts)
