"""The index of shards written by others (``torchdata-s3ext index``): each shard's samples counted from its tar
headers, read with ranged GETs, without reading the members' data where they are large.

Per S3 shard: one HEAD (size and ETag; every GET after it is pinned to that ETag), then ranged GETs of
``HEADER_WINDOW`` bytes, each starting at a member header: the headers of the members inside a window cost
nothing more, and the next GET starts at the first header past it. When the GETs advance less than
``DENSE_BYTES_PER_GET`` on average (small members: a GET costs about what reading a megabyte does, at one
connection's 90 MB/s and S3's first-byte latency), the rest of the shard is read in one ranged pass instead.
So a shard of ``m`` large members costs ``m + 1`` GETs of 64 KiB (the article's 420 MB shard: 201 GETs,
13 MB), and one of small members three windows, then one pass over the rest (8 MiB a GET).
``full_read=True`` reads every shard in one pass. The headers are read, and the tail after the last member
checked, by the readers' own tar reader (``samples.tar.archive_members``, told to seek past the data).
Measured in docs/writing.md: headers save the bytes, and cost a first-byte wait per member.

The sample count follows the readers' grouping: a sample is a run of members with the same key
(:func:`~torchdata_s3ext.samples.grouping.split_member_name`, member names normalised as ``load_from_tar()``
does); members that belong to no sample and non-regular members are not counted.
"""
import concurrent.futures
import io
import os
from typing import Any, BinaryIO, Callable, Iterator, List, Optional, Sequence, Set, Tuple

from .._config import S3Config
from ..s3.backends import get_opener
from ..s3.client.objects import head_object
from ..s3.client.pins import VersionPin
from ..s3.url import is_s3_url, local_path
from ..samples.grouping import split_member_name
from ..samples.tar import DamagedShard, archive_members
from ..samples.tar_format import TarInput
from .index import ShardRecord

__all__ = ["DENSE_BYTES_PER_GET", "HEADER_WINDOW", "scan_shard", "scan_shards"]

HEADER_WINDOW = 64 << 10
DENSE_BYTES_PER_GET = 1 << 20
#: a pass over the rest of a shard: parts of this size, this many in flight
_PASS_PART_SIZE, _PASS_CONCURRENCY = 8 << 20, 2
_SKIP_CHUNK = 1 << 20

RangeOpener = Callable[[int, Optional[int]], BinaryIO]


class _HeaderReader(io.RawIOBase):
    """A seekable read-only view of an object of ``size`` bytes that fetches only what is read: windows at
    first, one pass from the current position on once the windows prove the members small."""

    def __init__(self, size: int, open_range: RangeOpener, full_read: bool) -> None:
        super().__init__()
        self.size = size
        self.open_range = open_range
        self.windows = 0
        self._position = 0
        self._window = b""
        self._window_start = 0
        self._pass: Optional[BinaryIO] = open_range(0, None) if full_read else None
        self._pass_position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        data = self._from_pass(wanted) if self._pass is not None else self._from_window(wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _from_window(self, wanted: int) -> bytes:
        offset = self._position - self._window_start
        if not (0 <= offset and offset + wanted <= len(self._window)):
            end = min(self.size, self._position + max(wanted, HEADER_WINDOW))
            with self.open_range(self._position, end) as stream:
                self._window = stream.read()
            self._window_start, offset = self._position, 0
            self.windows += 1
            if self.windows >= 3 and end < self.windows * DENSE_BYTES_PER_GET:
                self._start_pass(end)
        return self._window[offset: offset + wanted]

    def _start_pass(self, start: int) -> None:
        """From ``start`` on, one pass: the windows served their last (small members)."""
        self._pass = self.open_range(start, None)
        self._pass_position = start

    def _from_pass(self, wanted: int) -> bytes:
        offset = self._position - self._window_start
        if 0 <= offset and offset + wanted <= len(self._window):
            return self._window[offset: offset + wanted]
        assert self._pass is not None
        if self._position < self._pass_position:  # tarfile never goes back; a rewind starts the pass again
            self._pass.close()
            self._start_pass(self._position)
        while self._pass_position < self._position:
            skipped = len(self._pass.read(min(_SKIP_CHUNK, self._position - self._pass_position)))
            if not skipped:
                return b""
            self._pass_position += skipped
        data = b""
        while len(data) < wanted:  # a stream may answer a read with less, at the end of one of its parts
            more = self._pass.read(wanted - len(data))
            if not more:
                break
            data += more
        self._pass_position += len(data)
        return data

    def close(self) -> None:
        if self._pass is not None:
            self._pass.close()
        super().close()


def scan_shard(url: str, config: S3Config, full_read: bool = False) -> ShardRecord:
    """What the index says of the shard at ``url`` (``s3://``, a local path or ``file://``), from its headers.

    Raises:
        ValueError: naming ``url``: not a tar, or damaged (the readers would stop there)
        OSError: reading failed, naming ``url``
    """
    if is_s3_url(url):
        head = head_object(url, config)
        size, etag = head.size, head.etag
        opener = get_opener("boto3")

        def open_range(start: int, end: Optional[int]) -> BinaryIO:
            part_size = _PASS_PART_SIZE if end is None else end - start
            return opener(url, config, part_size=part_size, concurrency=_PASS_CONCURRENCY, start=start, end=end)

        with VersionPin(etag).applied():
            samples, fields = _scan(url, _HeaderReader(size, open_range, full_read), size)
    else:
        size, etag = os.path.getsize(local_path(url)), None
        with open(local_path(url), "rb") as shard_file:
            samples, fields = _scan(url, shard_file, size)
    return ShardRecord(url, samples, size, etag, None, tuple(sorted(fields)))


def _scan(url: str, stream: Any, size: int) -> Tuple[int, Set[str]]:
    """Samples (runs of one key) and fields of the shard in ``stream`` (``size`` bytes, seekable)."""
    samples, fields, last_key = 0, set(), None
    try:
        for member in archive_members(url, TarInput(stream, size=size), read_data=False):
            if isinstance(member, DamagedShard):
                raise ValueError(f"{url}: damaged shard: {member.error}")
            split = split_member_name(member.name)
            if split is None:
                continue
            key, field = split
            if key != last_key:
                samples, last_key = samples + 1, key
            fields.add(field)
    finally:
        stream.close()
    return samples, fields


def scan_shards(urls: Sequence[str], config: S3Config, jobs: int = 4, full_read: bool = False) -> Iterator[ShardRecord]:
    """:func:`scan_shard` of each URL, ``jobs`` at once, yielded in the order of ``urls``."""
    with concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix="shard-scan") as pool:
        futures: List["concurrent.futures.Future[ShardRecord]"] = [
            pool.submit(scan_shard, url, config, full_read) for url in urls]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
