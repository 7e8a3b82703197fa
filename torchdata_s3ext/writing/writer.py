"""``ShardWriter``: samples -> WebDataset tar shards of bounded size, streamed straight to S3 (or a local
folder), and their index beside them.

The shards are named by a pattern with one ``%d`` field (webdataset's ``ShardWriter`` convention:
``s3://bkt/train/shard-%06d.tar``; a percent sign itself is ``%%``, also in a ``file://`` URL, whose other
characters are written as they are, not ``%XX``-escaped), numbered from ``start_shard``; brace patterns (``{000000..000099}``) are
refused, since they name a fixed set where a writer makes as many shards as its samples fill. The field must
lie in the file name (every shard in one folder, where the index goes) and the name must end in ``.tar``.

A shard ends before a sample that would take it past ``max_bytes`` (tar's end blocks and record padding
counted) or when it holds ``max_samples``; a sample larger than ``max_bytes`` on its own gets a shard of its
own. Each shard's upload goes on in the background while the next one is written (see ``upload``), so the
writer waits only when ``max_in_flight`` parts are in flight.
"""
import concurrent.futures
import itertools
import re
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from .._config import S3Config
from ..s3.url import is_pipe_url, is_s3_url, parse_s3_url
from .index import ShardIndex, ShardRecord, index_url_beside, write_shard_index
from .sinks import Sink, open_sink
from .tar import EncodedSample, archive_end, archive_size, encode_sample
from .upload import MAX_PARTS, MIN_PART_SIZE, StoredObject, UploadPool

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_PART_SIZE", "ShardWriter", "check_pattern"]

DEFAULT_MAX_BYTES = 400 << 20
DEFAULT_PART_SIZE = 8 << 20
DEFAULT_MAX_IN_FLIGHT = 4
#: ``%d``, ``%6d``, ``%06d``: a width of two digits at most, so that ``%25`` (a file:// URL's escaped ``%``) is no field
_NUMBER_FIELD = re.compile(r"%(?:0?[1-9][0-9]?)?d")


def check_pattern(pattern: Any) -> str:
    """``pattern`` when it names shards as :class:`ShardWriter` needs, else ``ValueError``/``TypeError`` saying why.

    >>> check_pattern("s3://bkt/train/shard-%06d.tar")
    's3://bkt/train/shard-%06d.tar'
    """
    if not isinstance(pattern, str):
        raise TypeError(f"a shard pattern is a string such as 's3://bkt/train/shard-%06d.tar', got {pattern!r}")
    if is_pipe_url(pattern):
        raise ValueError(f"cannot write shards to a pipe: URL: {pattern!r}")
    if "{" in pattern or "}" in pattern:
        raise ValueError(f"a shard pattern numbers shards with one %d field (e.g. 'shard-%06d.tar'); braces name a "
                         f"fixed set of shards, which a writer does not know in advance: {pattern!r}")
    without_percent_signs = pattern.replace("%%", "")
    if len(_NUMBER_FIELD.findall(without_percent_signs)) != 1 or without_percent_signs.count("%") != 1:
        raise ValueError(f"a shard pattern needs exactly one %d field (e.g. 'shard-%06d.tar'; %% for a percent "
                         f"sign), got {pattern!r}")
    first, other = pattern % 0, pattern % 123456789
    if first[: first.rfind("/") + 1] != other[: other.rfind("/") + 1]:
        raise ValueError(f"the %d field of a shard pattern must be in the file name (all shards in one folder, "
                         f"with their index): {pattern!r}")
    if not first.lower().endswith(".tar"):
        raise ValueError(f"a shard pattern must end in .tar (the shards are plain tar files): {pattern!r}")
    if is_s3_url(pattern):
        parse_s3_url(first)
    return pattern


def _check_sizes(max_bytes: Any, max_samples: Any, part_size: Any, max_in_flight: Any, s3: bool) -> None:
    if not isinstance(max_bytes, int) or max_bytes < archive_size(0):
        raise ValueError(f"max_bytes must be an integer of at least {archive_size(0)} (an empty tar), got {max_bytes!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be None or an integer of at least 1, got {max_samples!r}")
    if not isinstance(part_size, int) or not MIN_PART_SIZE <= part_size <= 5 << 30:
        raise ValueError(f"part_size must be an integer from {MIN_PART_SIZE} (5 MiB) to 5 GiB (S3's limits), got {part_size!r}")
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError(f"max_in_flight must be an integer of at least 1, got {max_in_flight!r}")
    if s3 and max_bytes > MAX_PARTS * part_size:
        raise ValueError(f"max_bytes {max_bytes} is more than S3's {MAX_PARTS} parts of part_size {part_size}")


class _OpenShard:
    """The shard being written: where it goes, and what it holds so far."""

    def __init__(self, number: int, url: str, sink: Sink) -> None:
        self.number = number
        self.url = url
        self.sink = sink
        self.members_size = 0
        self.nsamples = 0
        self.fields: set = set()


class _ClosedShard(NamedTuple):
    number: int
    nsamples: int
    fields: Tuple[str, ...]
    size: int
    stored: "concurrent.futures.Future[StoredObject]"


class ShardWriter:
    """Write samples as WebDataset shards ``pattern % number`` on S3 (multipart uploads streamed as the shards
    are written) or on a local path, then their index (``index.json`` in the pattern's folder).

    Samples are dicts as webdataset's ``TarWriter`` takes them: ``{"__key__": key, field: value, ...}``; each
    field becomes member ``KEY.FIELD``, its value encoded by webdataset's conventions (bytes as they are, str
    as UTF-8, int as decimal text, dict/list as JSON, numpy arrays as ``.npy``, PIL images by the field's
    extension: see :mod:`torchdata_s3ext.writing.fields`); fields starting with ``_`` are not written.

    Args:
        pattern: the shards' URLs, with one ``%d`` field: ``s3://bkt/train/shard-%06d.tar``, a local path or
            ``file://`` URL (see :func:`check_pattern`)
        max_bytes: most bytes in a shard; a sample larger than this alone is written alone in a shard
        max_samples: most samples in a shard (``None``: no limit)
        part_size: bytes per UploadPart (5 MiB to 5 GiB)
        max_in_flight: parts uploading at once; memory is at most ``(max_in_flight + 2) * part_size``
        start_shard: the first shard's number; ``shard_numbers``, an iterator of numbers shared by several
            writers (``itertools.count()``), replaces it so each takes numbers no other does
        mtime: the members' modification time (whole seconds; ``None``: when each is written)
        write_index: write ``index.json`` on close (off when several writers share a folder: see
            :func:`~torchdata_s3ext.writing.index.write_shard_index`)
        config, config_fields: how to reach S3, as for :func:`~torchdata_s3ext.list_shards`

    Note:
        On an exception (an upload that failed after its retries, an interrupt, a mistake in a sample) the
        shard being written is aborted and never appears; shards already closed finish uploading; no index
        is written. The error names the shard's URL.

    Example:
        >>> with ShardWriter("s3://bkt/train/shard-%06d.tar", max_bytes=400 << 20) as sink:  # doctest: +SKIP
        ...     for key, image_png, label in my_samples():
        ...         sink.write({"__key__": key, "image.png": image_png, "cls": label})
        >>> sink.urls  # doctest: +SKIP
        ['s3://bkt/train/shard-000000.tar', ...]
    """

    def __init__(
        self, pattern: str, max_bytes: int = DEFAULT_MAX_BYTES, max_samples: Optional[int] = None, *,
        part_size: int = DEFAULT_PART_SIZE, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, start_shard: int = 0,
        shard_numbers: Optional[Iterator[int]] = None, mtime: Optional[int] = None, write_index: bool = True,
        config: Optional[S3Config] = None, **config_fields: Any,
    ) -> None:
        self.pattern = check_pattern(pattern)
        _check_sizes(max_bytes, max_samples, part_size, max_in_flight, is_s3_url(pattern))
        self.max_bytes, self.max_samples, self.part_size = max_bytes, max_samples, part_size
        self.mtime = mtime
        self.write_index = write_index
        self.config = S3Config.merged(config, **config_fields).resolved()
        self.index_url = index_url_beside(pattern)
        self._numbers = shard_numbers if shard_numbers is not None else itertools.count(start_shard)
        self._pool = UploadPool(max_in_flight) if is_s3_url(pattern) else None
        self._open: Optional[_OpenShard] = None
        self._closed: List[_ClosedShard] = []
        self._records: Dict[int, ShardRecord] = {}
        self._last_key: Optional[str] = None
        self._state = "writing"
        self.index: Optional[ShardIndex] = None

    @property
    def urls(self) -> List[str]:
        """The shards stored so far (all of them once closed), in the order of their numbers."""
        return [record.url for record in self.shards]

    @property
    def shards(self) -> List[ShardRecord]:
        """What the index says of each shard stored so far, in the order of their numbers."""
        return [self.shards_by_number[number] for number in sorted(self.shards_by_number)]

    @property
    def shards_by_number(self) -> Dict[int, ShardRecord]:
        """The shards stored so far by number: what writers sharing ``shard_numbers`` merge into one index."""
        return dict(self._records)

    def write(self, sample: Mapping[str, Any]) -> None:
        """Add one sample (encoded now; its bytes go out as parts fill)."""
        if self._state != "writing":
            raise ValueError(f"this ShardWriter is {self._state}: it takes no more samples")
        # A sample that cannot be encoded is refused before any byte of it is written: the writer goes on.
        encoded = encode_sample(sample, self.mtime)
        if encoded.key == self._last_key:
            raise ValueError(f"sample key {encoded.key!r} twice in a row: readers would join the two into one sample")
        try:
            self._collect(wait=False)
            if self._open is not None:
                self._open.sink.check()
            self._add(encoded)
        except BaseException:
            self._abandon()
            raise

    def _add(self, encoded: EncodedSample) -> None:
        if self._open is not None and not self._fits(self._open, encoded):
            self._close_shard()
        shard = self._open if self._open is not None else self._start_shard()
        for chunk in encoded.chunks:
            shard.sink.write(chunk)
        shard.members_size += encoded.size
        shard.nsamples += 1
        shard.fields.update(encoded.fields)
        self._last_key = encoded.key
        full = self.max_samples is not None and shard.nsamples >= self.max_samples
        if full or archive_size(shard.members_size) > self.max_bytes:
            self._close_shard()  # now, so that its upload completes while the next one is written

    def close(self) -> Optional[ShardIndex]:
        """Finish every shard, wait for their uploads, write the index; return it (``None`` without samples
        or with ``write_index=False``). Raises the first upload's error, naming its URL."""
        if self._state != "writing":
            return self.index
        try:
            if self._open is not None:
                self._close_shard()
            self._collect(wait=True)
            if self.write_index and self._records:
                self.index = write_shard_index(self.index_url, self.shards, self.config)
        except BaseException:
            self._abandon()
            raise
        self._state = "closed"
        if self._pool is not None:
            self._pool.shutdown()
        return self.index

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        elif self._state == "writing":
            self._abandon()

    def _fits(self, shard: _OpenShard, encoded: EncodedSample) -> bool:
        return archive_size(shard.members_size + encoded.size) <= self.max_bytes

    def _start_shard(self) -> _OpenShard:
        number = next(self._numbers, None)
        if number is None:
            raise ValueError(f"{self.pattern}: shard_numbers ran out: a writer needs a number for each new shard")
        url = self.pattern % number
        self._open = _OpenShard(number, url, open_sink(url, self.config, self._pool, self.part_size))
        return self._open

    def _close_shard(self) -> None:
        shard, self._open = self._open, None
        assert shard is not None
        try:
            shard.sink.write(archive_end(shard.members_size))
            stored = shard.sink.finish()
        except BaseException:
            shard.sink.abort()
            raise
        size = archive_size(shard.members_size)
        self._closed.append(_ClosedShard(shard.number, shard.nsamples, tuple(sorted(shard.fields)), size, stored))

    def _collect(self, wait: bool) -> None:
        """Record the closed shards whose uploads are done (all of them, waiting, with ``wait``); raise the
        first failure."""
        pending = []
        for closed in self._closed:
            if not (wait or closed.stored.done()):
                pending.append(closed)
                continue
            stored = closed.stored.result()
            if stored.size != closed.size:
                raise OSError(f"{stored.url}: stored {stored.size} bytes where the shard has {closed.size}")
            self._records[closed.number] = ShardRecord(
                stored.url, closed.nsamples, stored.size, stored.etag, stored.md5sum, closed.fields)
        self._closed = pending

    def _abandon(self) -> None:
        """After an error: abort the open shard, let the closed ones finish (their own failures aborted)."""
        self._state = "failed"
        shard, self._open = self._open, None
        if shard is not None:
            shard.sink.abort()
        concurrent.futures.wait([closed.stored for closed in self._closed])
        if self._pool is not None:
            self._pool.shutdown()
