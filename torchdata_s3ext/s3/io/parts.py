"""Where the parts of a :class:`~torchdata_s3ext.s3.io.ranged.RangedReader` come from, and where their memory goes.

A reader asks its part source for a job that fetches bytes ``start..end-1`` (run on the reader's threads) and
tells it what became of each part. Two sources:

- :class:`NewParts`: every part is a new object, from ``fetch(start, end) -> bytes``; whole parts can then
  be handed to the caller without a copy, and the garbage collector frees them.
- :class:`PooledParts`: ``fetch_into(start, buffer)`` fills a bounded pool of reused buffers straight from
  the socket, so no part costs an allocation. It is the one place that counts buffers.

Buffers a finished stream no longer needs go to this process's :class:`SpareBuffers`, for the next stream.
"""
import concurrent.futures
import functools
import hashlib
import mmap
import os
import threading
import time
from typing import Callable, List, Optional, Union

from ..stats import process_stats
from .daemon_pool import DaemonPool
from .link_sizing import PartSizing

__all__ = ["Md5Check", "part_source", "PartData", "PartSource", "NewParts", "into_new_buffers", "PooledParts", "SpareBuffers"]

#: a fetched part: a new object (``fetch``), or a view of a buffer filled by ``fetch_into``
PartData = Union[bytes, bytearray, memoryview]
#: a pooled part buffer: its own anonymous mapping, so that letting it go hands its memory back at once (a
#: ``bytearray`` of 16 MiB stays in the allocator's heap once freed, where a process switching part sizes held
#: both sizes' buffers)
Buffer = Union[bytearray, mmap.mmap]


class SpareBuffers:
    """Part buffers of finished streams, kept for the next stream of this process, so that a new shard starts
    without allocating and page-faulting its buffers again (on 105 MB shards that was most of the gap to a
    plain GET).

    Holds at most one stream's buffers: of one part size, and no more than the stream giving one back may lend
    (``concurrency + 1``, or its memory budget's worth). A stream of another part size (the sizing changed it,
    :mod:`.link_sizing`) empties them when it takes a buffer, and a buffer of another size given back replaces
    them all: the next stream is likely to have the settings of the last one. Emptied in a child after ``fork``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._part_size = 0
        self._buffers: List[Buffer] = []

    def take(self, part_size: int) -> Buffer:
        """A spare buffer of ``part_size`` bytes, or a new one."""
        with self._lock:
            if self._part_size != part_size:
                self._part_size, self._buffers = part_size, []  # of no use to the streams to come: let them go
            if self._buffers:
                return self._buffers.pop()
        return mmap.mmap(-1, part_size)

    def give(self, buffer: Buffer, stream_buffers: int) -> None:
        """Keep ``buffer`` for the next stream; ``stream_buffers``: how many its stream lends at most."""
        with self._lock:
            if len(buffer) != self._part_size:
                self._part_size, self._buffers = len(buffer), []
            if len(self._buffers) < stream_buffers:
                self._buffers.append(buffer)

    def reset(self) -> None:
        """After a fork: a fresh lock (another thread may have held the parent's) and no buffers."""
        self._lock = threading.Lock()
        self._part_size = 0
        self._buffers = []


_SPARE = SpareBuffers()
os.register_at_fork(after_in_child=_SPARE.reset)


class PartSource:
    """How a reader gets its parts (:meth:`job`), and what it tells the source about their memory.

    A part's bytes are the reader's from the moment its job returns until the reader calls :meth:`release`,
    or :meth:`hold` then :meth:`read_returned` when a read may return views of them; a part the reader drops
    before its job returned is :meth:`abandon`-ed. This base keeps nothing, so it ignores all of that.
    """

    def job(self, start: int, end: int) -> Optional[Callable[[], PartData]]:
        """A call that fetches bytes ``start..end-1``; ``None`` while there is no memory for it."""
        raise NotImplementedError

    def release(self, data: PartData) -> None:
        """The reader is done with ``data``: no view of it is left."""

    def hold(self, data: PartData) -> None:
        """The read in progress has moved past ``data``, but what it returns may still be views of it."""

    def read_returned(self) -> None:
        """The read in progress copied out what it held: every part it held is released."""

    def abandon(self) -> None:
        """A part was dropped before its job returned (it never ran, failed, or its thread still writes)."""

    def close(self) -> None:
        """The reader is closed: no more jobs; its parts are released, abandoned, or held by a failed read."""


class NewParts(PartSource):
    """Every part a new object from ``fetch(start, end)``, checked to hold ``end - start`` bytes; each fetch
    timed for ``sizing``."""

    def __init__(self, url: str, fetch: Callable[[int, int], PartData], sizing: Optional[PartSizing] = None) -> None:
        self.url = url
        self._fetch = fetch
        self._sizing = sizing

    def job(self, start: int, end: int) -> Callable[[], PartData]:
        return functools.partial(self._checked_fetch, start, end)

    def _checked_fetch(self, start: int, end: int) -> PartData:
        began = time.monotonic()
        data = self._fetch(start, end)
        if self._sizing is not None:
            self._sizing.timed(len(data), time.monotonic() - began)
        process_stats().add(bytes_received=len(data))
        if len(data) != end - start:
            raise OSError(f"{self.url}: bytes {start}-{end - 1} came back as {len(data)} bytes, not {end - start}")
        return data


def into_new_buffers(fetch_into: Callable[[int, memoryview], None]) -> Callable[[int, int], bytearray]:
    """``fetch_into`` as a ``fetch`` that fills a new buffer for every part (for :class:`NewParts`)."""

    def fetch(start: int, end: int) -> bytearray:
        buffer = bytearray(end - start)
        fetch_into(start, memoryview(buffer))
        return buffer

    return fetch


class PooledParts(PartSource):
    """Parts filled by ``fetch_into`` into at most ``buffers`` reused buffers of ``part_size`` bytes (the
    sizing's: ``most_in_flight + 1``, the parts requested ahead and the one being read), each fill timed for
    the sizing. :attr:`lent` counts the buffers, so ``lent * part_size`` is the parts' memory.

    The one exception, so that a read longer than the pool still makes progress: the read holds every part
    it moves past until it returns (it joins them into its result), and the pool lends one more buffer for
    each of those but the first. The first may be only partly in the read (the read began inside it; for a
    stream's first read it is the empty part the reader starts with); the others are wholly in it, so the
    read's own result is at least as large as the extra buffers. Those are let go once given back.

    A buffer the reader is done with waits on the free list for the next part; once every part up to ``end``
    (the end of the reader's byte range) has been requested, it goes to the process's spare buffers instead, for the next stream (a seek
    back takes them from there again).
    """

    def __init__(self, fetch_into: Callable[[int, memoryview], None], end: int, sizing: PartSizing) -> None:
        self._fetch_into = fetch_into
        self._end = end  # where the reader's byte range ends: the object's end, or before
        self._sizing = sizing
        self.part_size = sizing.part_size
        self._most = sizing.most_in_flight + 1
        self.lent = 0  # buffers this stream took from the spares and has not let go of
        self._free: List[Buffer] = []
        self._held: List[PartData] = []  # the parts the read in progress has moved past
        self._all_requested = False

    @property
    def lent_bytes(self) -> int:
        """The memory of the buffers lent: what the sizing's budget bounds."""
        return self.lent * self.part_size

    def job(self, start: int, end: int) -> Optional[Callable[[], memoryview]]:
        buffer = self._lend()
        if buffer is None:
            return None
        self._all_requested = end >= self._end
        return functools.partial(self._fill, start, memoryview(buffer)[: end - start])

    def release(self, data: PartData) -> None:
        buffer = _pooled_buffer(data)
        if buffer is None:
            return
        if self.lent > self._most:
            self.lent -= 1  # lent for a long read: let it go
        elif self._all_requested:
            self.lent -= 1
            _SPARE.give(buffer, self._most)
        else:
            self._free.append(buffer)

    def hold(self, data: PartData) -> None:
        self._held.append(data)

    def read_returned(self) -> None:
        for data in self._held:
            self.release(data)
        self._held.clear()

    def abandon(self) -> None:
        self.lent -= 1  # never reused: its thread may still be writing into it

    def close(self) -> None:
        self._held.clear()  # a read that failed midway: those buffers go with it
        for buffer in self._free:
            _SPARE.give(buffer, self._most)
        self._free.clear()

    def _lend(self) -> Optional[Buffer]:
        """A buffer for the next part: a free one, or one more while fewer than the bound are lent."""
        if self._free:
            return self._free.pop()
        if self.lent >= self._most + max(len(self._held) - 1, 0):
            return None
        self.lent += 1
        return _SPARE.take(self.part_size)

    def _fill(self, start: int, view: memoryview) -> memoryview:
        began = time.monotonic()
        self._fetch_into(start, view)
        self._sizing.timed(len(view), time.monotonic() - began)
        process_stats().add(bytes_received=len(view))
        return view


def _pooled_buffer(data: PartData) -> Optional[Buffer]:
    """The pool buffer ``data`` is a view of (``None`` for the empty part a reader starts with)."""
    return data.obj if isinstance(data, memoryview) and isinstance(data.obj, (bytearray, mmap.mmap)) else None


class Md5Check:
    """The object's MD5 against ``content_md5``, hashed on a thread of its own as the parts arrive.

    The reader adds the parts in the order it requested them (new objects only: a pooled buffer may be reused
    before the thread reads it); the one thread hashes them in that order,
    each as soon as it has arrived, so the digest is ready about when the last part is.
    """

    def __init__(self, url: str, content_md5: str) -> None:
        self.url = url
        self.content_md5 = content_md5
        self._md5 = hashlib.md5()
        self._hasher = DaemonPool(1, "s3-md5")

    def add(self, part: "concurrent.futures.Future[PartData]") -> None:
        self._hasher.submit(lambda: self._md5.update(part.result()))

    def verify(self) -> None:
        """Raise unless the parts added, in order, hash to ``content_md5`` (waits for the last of them)."""
        self._hasher.shutdown(wait=True)
        digest = self._md5.hexdigest()
        if digest != self.content_md5:
            raise OSError(f"{self.url}: the bytes received do not match the object's ETag "
                          f"(MD5 {digest}, ETag {self.content_md5})")

    def stop(self) -> None:
        self._hasher.shutdown(wait=False, cancel_futures=True)


def part_source(
    url: str, end: int, fetch: Optional[Callable[[int, int], PartData]],
    fetch_into: Optional[Callable[[int, memoryview], None]], sizing: PartSizing, content_md5: Optional[str],
) -> PartSource:
    """Where a reader's parts come from: new objects from ``fetch``, or ``fetch_into`` filling reused buffers."""
    if fetch is not None and fetch_into is None:
        return NewParts(url, fetch, sizing)
    if fetch_into is not None and fetch is None:
        if content_md5:
            # No reuse: the hashing thread may read a part after the reader is done with it.
            return NewParts(url, into_new_buffers(fetch_into), sizing)
        return PooledParts(fetch_into, end, sizing)
    raise TypeError("give RangedReader one of fetch and fetch_into")
