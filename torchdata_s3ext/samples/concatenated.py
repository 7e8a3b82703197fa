"""Tar archives one after another in one stream (SageMaker Pipe Mode): their members and samples, archive by
archive, to the end of the stream.

Each archive is read by the one tar reader (``tar.archive_members``, one archive at a time) and checked as a
shard is, its members named ``<stream_url>#<ordinal>``
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
from typing import IO, Any, Dict, Iterator, Optional, Sequence, Union

from .compressed import compression_of
from .grouping import group_by_keys
from .policy import ErrorCounts
from .tar import DamagedShard, Member, ShardEnd, archive_members as one_archive_members
from .tar_format import BLOCK, TarInput, is_header

__all__ = ["archive_members", "archive_samples"]

_MARKER = 2 * BLOCK  # the end-of-archive marker
_MAGIC, _MAGIC_OFFSET = b"ustar", 257
_SCAN_CHUNK = 1 << 16


def _next_archive_start(window: bytes) -> Optional[int]:
    """Where in ``window`` the first tar header after two zero blocks begins, or ``None``."""
    found = window.find(_MAGIC, _MARKER + _MAGIC_OFFSET)
    while found >= 0:
        start = found - _MAGIC_OFFSET
        header = window[start:start + BLOCK]
        if len(header) == BLOCK and not window[start - _MARKER:start].strip(b"\0") and is_header(header):
            return start
        found = window.find(_MAGIC, found + 1)
    return None


def _skip_to_next_archive(tar: TarInput) -> None:
    """Read on to the next archive after a damaged one (see the module docstring), or to the end."""
    window = b""
    while True:
        chunk = tar.read(_SCAN_CHUNK)
        if not chunk:
            return
        window += chunk
        start = _next_archive_start(window)
        if start is not None:
            tar.unread(window[start:])
            return
        # What a header cut by the chunk's end needs: itself and the marker before it.
        window = window[-(_MARKER + BLOCK):]


def archive_members(stream_url: str, stream: IO[bytes]) -> Iterator[Union[Member, DamagedShard, ShardEnd]]:
    """The members of the tar archives in ``stream``, one after another, as ``tar.archive_members`` gives them
    for each, named ``f"{stream_url}#{ordinal}"``, a :class:`DamagedShard` after the members of a damaged
    archive, and a :class:`ShardEnd` after each archive; read to the end of the stream.

    >>> import io
    >>> from torchdata_s3ext.testing import seed_samples, tar_bytes
    >>> stream = io.BytesIO(tar_bytes(seed_samples(1)) + tar_bytes(seed_samples(1, first_index=1)))
    >>> [(item[0], item[1]) for item in archive_members("pipe-mode:/fifo", stream) if len(item) > 1]  # doctest: +NORMALIZE_WHITESPACE
    [('pipe-mode:/fifo#0', 'sample_00000000.image'), ('pipe-mode:/fifo#0', 'sample_00000000.label'),
     ('pipe-mode:/fifo#1', 'sample_00000001.image'), ('pipe-mode:/fifo#1', 'sample_00000001.label')]
    """
    tar = TarInput(stream)
    ordinal = 0
    while True:
        first_block = tar.read(BLOCK)
        if not first_block:
            return
        tar.unread(first_block)
        archive_url = f"{stream_url}#{ordinal}"
        ordinal += 1
        compression = compression_of(first_block)
        if compression is not None:
            problem = f"a {compression}-compressed archive: Pipe Mode reads uncompressed tar archives only"
            yield DamagedShard(archive_url, tarfile.ReadError(problem))
            yield ShardEnd(archive_url)
            tar.read(BLOCK)
            _skip_to_next_archive(tar)
            continue
        damaged = False
        for item in one_archive_members(archive_url, tar, base=None, single=True):
            damaged = damaged or isinstance(item, DamagedShard)
            yield item
        yield ShardEnd(archive_url)
        if damaged:
            _skip_to_next_archive(tar)


def archive_samples(
    stream_url: str,
    stream: IO[bytes],
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Iterator[Dict[str, Any]]:
    """The WebDataset samples of the tar archives in ``stream``, archive after archive to its end, as a shard's
    are read: a damaged archive is bad data (``bad_shards``), and under ``on_error="skip"`` or ``"warn"`` its
    samples before the damage are kept and the next archive is read. ``__url__`` is
    ``f"{stream_url}#{ordinal}"``; a sample never spans two archives."""
    return group_by_keys(archive_members(stream_url, stream), required_fields, on_error, error_counts)
