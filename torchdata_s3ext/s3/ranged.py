"""Read one object as consecutive ranged GETs, several parts in flight, with bounded memory.

``RangedReader`` is a binary stream over ``fetch(start, end) -> bytes`` or ``fetch_into(start, buffer)``
(one part, retried and resumed by the backend). Up to ``concurrency`` parts are fetched ahead on a small
thread pool while the caller reads the current one, so at most ``(concurrency + 1) * part_size`` bytes are
held per open object; with ``fetch_into`` those are the same ``concurrency + 1`` buffers over and over, so
no part costs an allocation. One connection to S3 tops out near 90 MB/s; several parts in flight add up,
on a fast local link as well.

The stream is seekable, so ``tarfile`` (and torchdata's ``load_from_tar()``, which asks ``seekable()``)
reads it in its random-access mode: one read per member instead of its stream mode's 10 KiB pieces, and
members nobody reads are skipped. A seek inside the read-ahead window costs nothing; one outside it drops
the window and fetches from the new position on.

Given ``content_md5`` (the ETag of a plain, single-part upload), the parts are hashed in order on one more
thread as they arrive, and the last part is only handed out once the whole object matched it. A seek that
leaves the window (so that some bytes are never fetched) ends that check.
"""
import collections
import concurrent.futures
import hashlib
import io
import os
import threading
from typing import Callable, Deque, List, NamedTuple, Optional, Union

from .stats import process_stats

__all__ = ["RangedReader", "DEFAULT_PART_SIZE", "DEFAULT_CONCURRENCY"]

DEFAULT_PART_SIZE = 16 << 20
DEFAULT_CONCURRENCY = 6

_Data = Union[bytes, bytearray, memoryview]


class _SpareBuffers:
    """Part buffers of finished streams, kept for the next stream of this process, so that a new shard starts
    without allocating and page-faulting its buffers again (on 105 MB shards that was most of the gap to a
    plain GET). Holds at most ``limit`` bytes: one stream's buffers at the default settings."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._buffers: List[bytearray] = []

    def take(self, size: int) -> bytearray:
        with self._lock:
            for index, buffer in enumerate(self._buffers):
                if len(buffer) == size:
                    return self._buffers.pop(index)
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if sum(map(len, self._buffers)) + len(buffer) <= self.limit:
                self._buffers.append(buffer)

    def reset(self) -> None:
        """After a fork: a fresh lock (another thread may have held the parent's) and no buffers."""
        self._lock = threading.Lock()
        self._buffers = []


_SPARE = _SpareBuffers(limit=(DEFAULT_CONCURRENCY + 1) * DEFAULT_PART_SIZE)
os.register_at_fork(after_in_child=_SPARE.reset)


class _Part(NamedTuple):
    start: int
    end: int
    data: "concurrent.futures.Future[_Data]"


class RangedReader(io.RawIOBase):
    def __init__(
        self,
        url: str,
        size: int,
        fetch: Optional[Callable[[int, int], _Data]] = None,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        content_md5: Optional[str] = None,
        fetch_into: Optional[Callable[[int, memoryview], None]] = None,
    ) -> None:
        if part_size < 1 or concurrency < 1:
            raise ValueError(f"part_size and concurrency must be positive, got {part_size} and {concurrency}")
        if (fetch is None) == (fetch_into is None):
            raise TypeError("give RangedReader one of fetch and fetch_into")
        self.url = url
        self.size = size
        self._fetch = fetch
        self._fetch_into = fetch_into
        # Buffers whose part has been read, for the next parts (not with an MD5 check, which reads them late).
        self._free: Optional[List[bytearray]] = [] if fetch_into is not None and not content_md5 else None
        self._buffers = 0  # buffers made for parts: at most concurrency + 1
        self._spent: List[memoryview] = []  # parts left behind during the current read, recycled after it
        self._error: Optional[BaseException] = None  # a part that failed for good fails every later read
        self._part_size = part_size
        self._concurrency = concurrency
        self._next_offset = 0  # first byte not yet requested
        self._position = 0  # the next byte read returns
        self._part = memoryview(b"")  # the part being read, which starts at byte _part_start
        self._part_start = 0
        self._window: Deque[_Part] = collections.deque()  # parts requested ahead, in order
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part") if size else None
        self._content_md5 = content_md5
        self._md5 = hashlib.md5()
        self._hashed: Optional["concurrent.futures.Future[None]"] = None
        self._hasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3-md5") if content_md5 else None
        self._fill_window()
        if self._next_offset >= self.size and not self._window:
            self._check_md5()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        origins = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}
        if whence not in origins:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        target = origins[whence] + offset
        if target < 0:
            raise ValueError(f"negative seek position {target} in {self.url}")
        self._position = target  # the part holding it is found by the next read
        return target

    def read(self, size: Optional[int] = -1) -> bytes:
        self._check_open()
        remaining = max(self.size - self._position, 0)
        size = remaining if size is None or size < 0 else min(size, remaining)
        pieces: List[memoryview] = []
        while size:
            piece = self._current()[:size]
            pieces.append(piece)
            self._position += len(piece)
            size -= len(piece)
        if len(pieces) == 1 and type(pieces[0].obj) is bytes and len(pieces[0]) == len(pieces[0].obj):
            data = pieces[0].obj  # a whole part: no copy
        else:
            data = b"".join(pieces)
        self._recycle_spent()
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._position < self.size:
            piece = self._current()[: len(view) - filled]
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
            self._position += len(piece)
        self._recycle_spent()
        return filled

    def close(self) -> None:
        if not self.closed:
            self._drop_window()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._hasher is not None:
                self._hasher.shutdown(wait=False, cancel_futures=True)
            self._recycle(self._part)
            self._part = memoryview(b"")
            self._spent.clear()
            if self._free is not None:
                for buffer in self._free:
                    _SPARE.give(buffer)
                self._free.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")

    def _current(self) -> memoryview:
        """The bytes of the part holding the position, from the position on (the position is < size)."""
        offset = self._position - self._part_start
        if 0 <= offset < len(self._part):
            return self._part[offset:]
        if self._error is not None:
            raise self._error
        self._spent.append(self._part)
        self._part = memoryview(b"")
        if not self._window or not self._window[0].start <= self._position < self._window[-1].end:
            self._restart(self._position)  # a seek back, or beyond the parts requested so far
        while self._window[0].end <= self._position:
            self._recycle(memoryview(self._take()))  # fetched ahead of a forward seek: hashed, then dropped
        self._part_start = self._window[0].start
        self._part = memoryview(self._take())
        self._fill_window()
        return self._part[self._position - self._part_start:]

    def _take(self) -> _Data:
        """The first part of the window, once fetched (the caller refills the window)."""
        part = self._window.popleft()
        try:
            data = part.data.result()
        except BaseException as error:
            self._error = error
            raise
        if part.end >= self.size:
            self._check_md5()
        return data

    def _fill_window(self) -> None:
        while self._pool is not None and len(self._window) < self._concurrency and self._next_offset < self.size:
            start, end = self._next_offset, min(self._next_offset + self._part_size, self.size)
            if self._fetch_into is not None:
                buffer = self._buffer()
                if buffer is None:
                    break  # the part just left behind comes back to the free list once the read ends
                data = self._pool.submit(self._checked_fetch_into, start, memoryview(buffer)[: end - start])
            else:
                data = self._pool.submit(self._checked_fetch, start, end)
            part = _Part(start, end, data)
            self._window.append(part)
            self._hash_in_order(part.data)
            self._next_offset = end

    def _restart(self, position: int) -> None:
        """Fetch from ``position`` on: the window no longer leads there (a seek back, or far ahead)."""
        self._drop_window()
        self._stop_md5()  # the bytes skipped are never fetched, so they cannot be hashed
        self._next_offset = position
        self._fill_window()

    def _drop_window(self) -> None:
        for part in self._window:
            part.data.cancel()
            if part.data.done() and not part.data.cancelled() and part.data.exception() is None:
                self._recycle(part.data.result())
            elif self._free is not None:
                self._buffers -= 1  # never filled, or still being written by its thread: not reused
        self._window.clear()

    def _buffer(self) -> Optional[bytearray]:
        """A buffer for the next part: a free one, a new one, or none while concurrency + 1 are in use."""
        if self._free is None:
            return bytearray(self._part_size)
        if self._free:
            return self._free.pop()
        # concurrency + 1, of which one may be a part the current read has just left behind; parts beyond that,
        # left behind by a read longer than a part, do not count: that read holds as much memory itself
        if self._buffers - max(len(self._spent) - 1, 0) > self._concurrency:
            return None
        self._buffers += 1
        return _SPARE.take(self._part_size)

    def _recycle_spent(self) -> None:
        """Keep the buffers of the parts the last read finished with for later parts (read returned copies)."""
        for part in self._spent:
            self._recycle(part)
        self._spent.clear()
        self._fill_window()

    def _recycle(self, data: Optional[_Data]) -> None:
        """Put a finished part's buffer on the free list, or let it go (counted out of the buffers in use)."""
        if self._free is None or not isinstance(data, memoryview) or not isinstance(data.obj, bytearray):
            return
        if len(data.obj) != self._part_size or self._buffers > self._concurrency + 1:
            self._buffers -= 1
        elif self._next_offset >= self.size or self.closed:
            self._buffers -= 1
            _SPARE.give(data.obj)  # every part is requested: the next stream can use it
        else:
            self._free.append(data.obj)

    def _hash_in_order(self, part: "concurrent.futures.Future[_Data]") -> None:
        # One hashing thread takes the parts in the order they were requested, whenever each arrives.
        if self._hasher is not None:
            self._hashed = self._hasher.submit(lambda: self._md5.update(part.result()))

    def _stop_md5(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown(wait=False, cancel_futures=True)
        self._hasher = None
        self._hashed = None

    def _check_md5(self) -> None:
        """Raise unless the object's bytes match ``content_md5`` (called before the last part is handed out)."""
        if self._hashed is None:
            return
        self._hashed.result()
        self._hashed = None
        digest = self._md5.hexdigest()
        if digest != self._content_md5:
            raise OSError(f"{self.url}: the bytes received do not match the object's ETag "
                          f"(MD5 {digest}, ETag {self._content_md5})")

    def _checked_fetch_into(self, start: int, view: memoryview) -> memoryview:
        assert self._fetch_into is not None
        self._fetch_into(start, view)
        process_stats().add(bytes_received=len(view))
        return view

    def _checked_fetch(self, start: int, end: int) -> _Data:
        assert self._fetch is not None
        data = self._fetch(start, end)
        process_stats().add(bytes_received=len(data))
        if len(data) != end - start:
            raise OSError(f"{self.url}: bytes {start}-{end - 1} came back as {len(data)} bytes, not {end - start}")
        return data
