"""The local shard cache's writer: a miss's chunks copied into its ``.part`` file and fed to its checksum (a
CRC, or an MD5 when asked: :mod:`.integrity`), each on a thread of its own, a bounded window behind the reader
(:class:`CacheWriter`)."""
import collections
import itertools
import os
import threading
from typing import Any, Callable, Deque, List, Optional

from ..client.checksums import Checksum

__all__ = ["CacheWriter", "WRITE_BEHIND_BYTES"]

#: bytes read but not yet written to the cache at most (the tee's memory, beyond the backend's own)
WRITE_BEHIND_BYTES = 64 << 20
_CHUNKS_PER_WRITE = 64  # chunks a writer's thread takes at once: one writev, one lock round trip
#: bytes waiting that wake a thread (else a drain or the close does): a wake-up per few MiB, not per chunk, so
#: that the reader and the threads, on one core, switch rarely
_WAKE_BYTES = 8 << 20


class CacheWriter:
    """Writes the chunks handed to it, in order, on a thread of its own, and feeds them to ``checksum`` (if
    any) on another, so that writing and checksumming run beside each other and beside the reader; each thread
    has at most :data:`WRITE_BEHIND_BYTES` waiting. ``error`` is the first write's failure, after which it only
    drops.

    The chunks are the reader's own objects, written (``writev`` of views of several at once) and checksummed
    as they are: no copy. ``read_fd`` reads the copy back until :meth:`close_copy`, also after :meth:`close`."""

    def __init__(self, path: str, checksum: Optional[Checksum]) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.read_fd = os.open(path, os.O_RDONLY)
        except OSError:
            os.close(self._fd)
            raise
        self.checksum = checksum
        self._changed = threading.Condition()
        self._stopping = False
        self._draining = 0  # callers of drain() waiting: the threads take every chunk, however few bytes
        self._discarding = False
        self._closed = self._copy_closed = False
        self.error: Optional[OSError] = None
        self.written = 0
        self._lanes: List[_Lane] = [_Lane(self._write)]
        if checksum is not None:
            self._lanes.append(_Lane(self._hash))
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"s3-cache-{name}", daemon=True)
                         for lane, name in zip(self._lanes, ("writer", "checksum"))]
        for thread in self._threads:
            thread.start()

    def put(self, data: bytes) -> None:
        with self._changed:
            while any(lane.waiting >= WRITE_BEHIND_BYTES for lane in self._lanes) and self.error is None:
                self._changed.wait()
            if self.error is None:
                wake = False
                for lane in self._lanes:
                    lane.chunks.append(data)
                    wake = wake or lane.waiting < _WAKE_BYTES <= lane.waiting + len(data)
                    lane.waiting += len(data)
                if wake:  # a thread at work finds these chunks without being woken
                    self._changed.notify_all()

    def drain(self, hashed: bool = True) -> None:
        """Wait until every chunk handed over is written, and checksummed unless not ``hashed`` (or writing failed)."""
        lanes = self._lanes if hashed else self._lanes[:1]
        with self._changed:
            self._draining += 1
            self._changed.notify_all()
            try:
                while any(lane.waiting for lane in lanes) and self.error is None:
                    self._changed.wait()
            finally:
                self._draining -= 1

    def copied(self) -> bool:
        """Whether every chunk handed over is in the copy, without a write failing."""
        with self._changed:
            return self.error is None and not self._lanes[0].waiting

    def close(self, discard: bool = False) -> None:
        """Stop the threads once every chunk is written and checksummed (at once, the chunks dropped, if
        ``discard``), and close the copy for writing."""
        with self._changed:
            self._stopping = True
            self._discarding = self._discarding or discard
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def close_copy(self) -> None:
        if not self._copy_closed:
            self._copy_closed = True
            os.close(self.read_fd)

    def _run(self, lane: "_Lane") -> None:
        while True:
            with self._changed:
                while not self._stopping and not (lane.chunks and (lane.waiting >= _WAKE_BYTES or self._draining)):
                    self._changed.wait()
                if not lane.chunks:
                    return
                chunks = list(itertools.islice(lane.chunks, _CHUNKS_PER_WRITE))
            try:
                if self.error is None and not self._discarding:
                    lane.consume(chunks)
            except OSError as error:
                self.error = error
            with self._changed:
                if self.error is not None or self._discarding:
                    for every in self._lanes:  # every lane's, this one's taken chunks included
                        every.chunks.clear()
                        every.waiting = 0
                else:
                    for chunk in chunks:
                        lane.chunks.popleft()
                        lane.waiting -= len(chunk)
                self._changed.notify_all()

    def _write(self, chunks: List[bytes]) -> None:
        views = [memoryview(chunk) for chunk in chunks]
        first = 0
        while first < len(views):
            count = os.writev(self._fd, views[first:])
            self.written += count
            while first < len(views) and count >= len(views[first]):
                count -= len(views[first])
                first += 1
            if count:
                views[first] = views[first][count:]

    def _hash(self, chunks: List[bytes]) -> None:
        assert self.checksum is not None
        for chunk in chunks:
            self.checksum.update(chunk)


class _Lane:
    """The chunks one of a writer's threads has yet to pass to ``consume``, and their bytes."""

    def __init__(self, consume: Callable[[List[bytes]], Any]) -> None:
        self.consume = consume
        self.chunks: Deque[bytes] = collections.deque()
        self.waiting = 0
