"""The local shard cache's miss: the backend's stream of a whole shard, its bytes copied into the cache entry
as they are read, on a thread of its own, then checked and put in place (:class:`TeeReader`); see
:mod:`.cache` for when it is used.
"""
import collections
import hashlib
import io
import logging
import os
import threading
import warnings
from typing import Any, BinaryIO, Callable, Deque, List, Optional

from .cache_store import CacheStore
from .objects import ObjectHead

__all__ = ["CacheEntry", "CacheWriter", "TeeReader", "WRITE_BEHIND_BYTES"]

logger = logging.getLogger("torchdata_s3ext")

#: bytes read but not yet written to the cache at most (the tee's memory, beyond the backend's own)
WRITE_BEHIND_BYTES = 64 << 20
_GAP_CHUNK = 8 << 20


class CacheEntry:
    """The cache entry a tee fills, and what becomes of it: put in place, or dropped."""

    def __init__(self, store: CacheStore, key: str, url: str, head: ObjectHead, lock: Any) -> None:
        self.store, self.key, self.url, self.head, self.lock = store, key, url, head, lock
        self._ended = False

    def end(self, commit: bool) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if commit:
                self.store.commit(self.key, self.url, self.head)
            else:
                self.store.remove(self.key)
        except OSError as error:  # its metadata could not be written: the entry goes
            self.store.remove(self.key)
            self.store.writing_failed(self.url, error)
        finally:
            self.lock.release()


class CacheWriter:
    """Writes the chunks handed to it, in order, on a thread of its own, and hashes them (``hash_md5``) on
    another, so that writing and hashing run beside each other and beside the reader; each thread has at most
    :data:`WRITE_BEHIND_BYTES` waiting. ``error`` is the first write's failure, after which it only drops.

    The chunks are the reader's own objects, written and hashed as they are: no copy."""

    def __init__(self, path: str, hash_md5: bool) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.read_fd = os.open(path, os.O_RDONLY)
        except OSError:
            os.close(self._fd)
            raise
        self._md5 = hashlib.md5() if hash_md5 else None
        self._changed = threading.Condition()
        self._stopping = False
        self.error: Optional[OSError] = None
        self.written = 0
        self._lanes: List[_Lane] = [_Lane(self._write)]
        if self._md5 is not None:
            self._lanes.append(_Lane(self._md5.update))
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"s3-cache-{name}", daemon=True)
                         for lane, name in zip(self._lanes, ("writer", "md5"))]
        for thread in self._threads:
            thread.start()

    def put(self, data: bytes) -> None:
        with self._changed:
            while any(lane.waiting >= WRITE_BEHIND_BYTES for lane in self._lanes) and self.error is None:
                self._changed.wait()
            if self.error is None:
                for lane in self._lanes:
                    lane.chunks.append(data)
                    lane.waiting += len(data)
                self._changed.notify_all()

    def drain(self, hashed: bool = True) -> None:
        """Wait until every chunk handed over is written, and hashed unless not ``hashed`` (or writing failed)."""
        lanes = self._lanes if hashed else self._lanes[:1]
        with self._changed:
            while any(lane.waiting for lane in lanes) and self.error is None:
                self._changed.wait()

    def md5_hexdigest(self) -> Optional[str]:
        return self._md5.hexdigest() if self._md5 is not None else None

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        for fd in (self._fd, self.read_fd):
            os.close(fd)

    def _run(self, lane: "_Lane") -> None:
        while True:
            with self._changed:
                while not lane.chunks and not self._stopping:
                    self._changed.wait()
                if not lane.chunks:
                    return
                data = lane.chunks[0]
            try:
                if self.error is None:
                    lane.consume(data)
            except OSError as error:
                self.error = error
            with self._changed:
                lane.chunks.popleft()
                lane.waiting -= len(data)
                if self.error is not None:
                    for every in self._lanes:
                        every.chunks.clear()
                        every.waiting = 0
                self._changed.notify_all()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.written += len(data)


class _Lane:
    """The chunks one of a writer's threads has yet to pass to ``consume``, and their bytes."""

    def __init__(self, consume: Callable[[bytes], Any]) -> None:
        self.consume = consume
        self.chunks: Deque[bytes] = collections.deque()
        self.waiting = 0


class TeeReader(io.RawIOBase):
    """The backend's stream of a whole shard, its bytes copied into the cache entry as they are read.

    The backend's stream is only ever read forward (``_pulled`` bytes so far): a seek forward reads through
    the gap, and writes it; a read before ``_pulled`` comes back from the copy. Once copying failed (a full
    disk) or the copy was dropped, the stream reads (and seeks, if it can) the backend's stream itself.
    """

    def __init__(self, url: str, source: BinaryIO, writer: "CacheWriter", entry: CacheEntry) -> None:
        self.url = url
        self._source = source
        self._entry: Optional[CacheEntry] = entry
        self._size = entry.head.size
        self._writer: Optional[CacheWriter] = writer
        self._position = 0
        self._pulled = 0  # bytes read from the source; it stands there
        self._source_position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._source.seekable()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")
        if not self.seekable():
            raise io.UnsupportedOperation(f"seek in a forward-only stream ({self.url})")
        origins = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}
        if whence not in origins:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        target = origins[whence] + offset
        if target < 0:
            raise ValueError(f"negative seek position {target} in {self.url}")
        self._position = target
        return target

    def when_all_requested(self, callback: Callable[[], None]) -> None:
        """The backend stream's ``when_all_requested`` (:mod:`.prefetch`), or ``callback()`` now without one."""
        when_all_requested = getattr(self._source, "when_all_requested", None)
        if when_all_requested is None:
            callback()
        else:
            when_all_requested(callback)

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: Optional[int] = -1) -> bytes:
        """``size`` bytes (all that are left for ``-1``), fewer only at the end, as tarfile expects."""
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")
        read_all = size is None or size < 0
        wanted = _GAP_CHUNK if read_all else size
        pieces = []
        while wanted > 0:
            piece = self._read_some(wanted)
            if not piece:
                break
            pieces.append(piece)
            if not read_all:
                wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes from one place: the copy, or the source."""
        if self._writer is not None and self._writer.error is not None:
            self._give_up(self._writer.error)
        if self._position < self._pulled and self._writer is not None:
            return self._read_copy(min(size, self._pulled - self._position))
        while self._pulled < self._position and self._entry is not None:  # a seek forward: the gap is copied
            if not self._pull(min(self._position - self._pulled, _GAP_CHUNK)):
                return b""
        if self._entry is None:  # in place (every byte is in the copy), or dropped (the source serves)
            return b"" if self._writer is not None else self._read_source(size)
        data = self._pull(size)
        self._position += len(data)
        return data

    def _pull(self, size: int) -> bytes:
        """The next ``size`` bytes of the source, handed to the writer; at the source's end, the entry ends."""
        assert self._writer is not None and self._entry is not None
        data = self._source.read(size)
        self._source_position += len(data)
        if data:
            self._pulled += len(data)
            self._writer.put(data if type(data) is bytes else bytes(data))
        if self._pulled > self._size:
            self._drop(f"{self.url}: more bytes than the {self._size} its HEAD said (the object changed?); not cached")
        elif not data or self._pulled == self._size:
            self._finish()
        return data

    def _read_copy(self, size: int) -> bytes:
        assert self._writer is not None
        self._writer.drain(hashed=False)  # a read back (tarfile's probes, the end-of-archive check) needs the bytes only
        if self._writer.error is not None:
            self._give_up(self._writer.error)
            return self._read_source(size)
        data = os.pread(self._writer.read_fd, size, self._position)
        self._position += len(data)
        return data

    def _read_source(self, size: int) -> bytes:
        if self._source_position != self._position:
            if self._source.seekable():
                self._source.seek(self._position)
                self._source_position = self._position
            else:  # forward only: read up to the position (this stream reports itself unseekable anyway)
                while self._source_position < self._position:
                    skipped = self._source.read(min(self._position - self._source_position, _GAP_CHUNK))
                    if not skipped:
                        return b""
                    self._source_position += len(skipped)
        data = self._source.read(size)
        self._source_position += len(data)
        self._position += len(data)
        return data

    def _finish(self) -> None:
        """The source ended: the copy goes in place if it is the whole object, checked, else it is dropped."""
        assert self._writer is not None and self._entry is not None
        self._writer.drain()
        head = self._entry.head
        if self._writer.error is not None:
            self._give_up(self._writer.error)
        elif self._writer.written != head.size:
            self._drop(f"{self.url}: {self._writer.written} bytes read, its HEAD said {head.size}; not cached")
        elif head.content_md5 is not None and self._writer.md5_hexdigest() not in (None, head.content_md5):
            self._drop(f"{self.url}: the bytes read do not match its ETag (MD5 {self._writer.md5_hexdigest()}, "
                       f"ETag {head.content_md5}); not cached")
        else:
            self._entry.end(commit=True)
            self._entry = None  # the writer stays, idle, for reads of the copy
            self._source.close()  # every byte is in the copy now

    def _drop(self, message: str) -> None:
        """Drop the copy (with ``message`` as a warning, if any) and read the source from now on."""
        if message:
            logger.warning(message)
            warnings.warn(message, stacklevel=4)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._entry is not None:
            self._entry.end(commit=False)
            self._entry = None

    def _give_up(self, error: OSError) -> None:
        """Writing failed: no more caching in this process, the bytes from S3 from now on."""
        assert self._entry is not None
        store = self._entry.store
        self._drop("")
        store.writing_failed(self.url, error)

    def close(self) -> None:
        if not self.closed:
            try:
                self._drop("")
            finally:
                self._source.close()
        super().close()
