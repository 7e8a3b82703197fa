"""The local shard cache's miss: the backend's stream of a whole shard, its bytes copied into the cache entry
as they are read, on a thread of its own (:class:`TeeReader`), then checked and put in place in the background
once the last byte is read (the reader does not wait: the bytes it serves are the backend's either way, and
the check only decides whether the copy becomes an entry); see :mod:`.cache` for when it is used.

A pending check holds the shard's lock and its reservation until the copy is renamed into place or dropped.
A process exiting waits up to :data:`FINALIZE_AT_EXIT_S` for its pending checks (:func:`join_finalizers`,
run by a ``multiprocessing.util.Finalize`` exit hook: multiprocessing runs those at interpreter exit and when
a DataLoader worker's ``Process`` ends, also under fork, whose children end in ``os._exit`` without running
``atexit``); one not done by then leaves a ``.part`` file and an incomplete metadata file, never trusted, that
the next process to use the cache removes, and a log line says so. Not waiting at the stream's close instead:
the close comes right after the last read, so the reader would wait for the check as before.
"""
import io
import logging
import multiprocessing.util
import os
import threading
import time
import warnings
from typing import Any, BinaryIO, Callable, Optional, Set

from .cache_store import CacheStore
from .cache_writer import CacheWriter
from .client.objects import ObjectHead
from .io.ranges import seek_target

__all__ = ["CacheEntry", "FINALIZE_AT_EXIT_S", "TeeReader", "join_finalizers"]

logger = logging.getLogger("torchdata_s3ext")

#: seconds an exiting process waits for its entries still being checked: below the 5 s a DataLoader gives
#: its workers to exit before it terminates them
FINALIZE_AT_EXIT_S = 4.0
_GAP_CHUNK = 8 << 20


def _warn(message: str, stacklevel: int) -> None:
    logger.warning(message)
    warnings.warn(message, stacklevel=stacklevel)


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


# -- the checks in the background, and the pending ones at exit

_pending: Set[threading.Thread] = set()
_pending_lock = threading.Lock()
_exit_hook_pid: Optional[int] = None


def _forget_after_fork() -> None:
    global _pending, _pending_lock
    _pending, _pending_lock = set(), threading.Lock()  # the parent's checks are its own, and their threads too


os.register_at_fork(after_in_child=_forget_after_fork)


def _start_finalizer(writer: CacheWriter, entry: CacheEntry) -> None:
    """Check ``writer``'s copy and end ``entry`` with it on a thread of its own, tracked until it is done."""
    global _exit_hook_pid
    thread = threading.Thread(target=_finalize, args=(writer, entry), name="s3-cache-finalize", daemon=True)
    with _pending_lock:
        _pending.add(thread)
        if _exit_hook_pid != os.getpid():  # a forked child starts with no hook (multiprocessing clears them)
            _exit_hook_pid = os.getpid()
            multiprocessing.util.Finalize(None, _finish_at_exit, exitpriority=10)
    thread.start()


def _finalize(writer: CacheWriter, entry: CacheEntry) -> None:
    """The source ended: the copy goes in place if it is the whole object, checked (its size, and its MD5
    where the ETag is one), else it is dropped, with one warning for a failed check."""
    commit = False
    try:
        writer.close()  # every chunk written and hashed
        url, head = entry.url, entry.head
        if writer.error is not None:
            entry.store.writing_failed(url, writer.error)
        elif writer.written != head.size:
            _warn(f"{url}: {writer.written} bytes read, its HEAD said {head.size}; not cached", stacklevel=2)
        elif head.content_md5 is not None and writer.md5_hexdigest() not in (None, head.content_md5):
            _warn(f"{url}: the bytes read do not match its ETag (MD5 {writer.md5_hexdigest()}, "
                  f"ETag {head.content_md5}); not cached", stacklevel=2)
        else:
            commit = True
    finally:
        try:
            entry.end(commit)
        finally:
            with _pending_lock:
                _pending.discard(threading.current_thread())


def join_finalizers(timeout: Optional[float] = None) -> bool:
    """Wait (at most ``timeout`` seconds) until this process's copies being checked are in place or dropped,
    and their locks free; whether none is left."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _pending_lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _finish_at_exit() -> None:
    if not join_finalizers(FINALIZE_AT_EXIT_S):
        with _pending_lock:
            left = len(_pending)
        logger.warning("%d shard cache entries still being checked after %.0f s at exit: left as temporary files, "
                       "which the next process to use the cache removes", left, FINALIZE_AT_EXIT_S)


class TeeReader(io.RawIOBase):
    """The backend's stream of a whole shard, its bytes copied into the cache entry as they are read.

    The backend's stream is only ever read forward (``_pulled`` bytes so far): a seek forward reads through
    the gap, and writes it; a read before ``_pulled`` comes back from the copy. Once copying failed (a full
    disk) or the copy was dropped, the stream reads (and seeks, if it can) the backend's stream itself. At the
    source's last byte the entry is handed to a finalizer (:func:`_start_finalizer`) and the read returns at
    once; the copy stays readable here (``_entry`` is then ``None``, ``_writer`` kept for reads back).
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
        self._source_closed = False

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
        self._position = seek_target(self.url, offset, whence, self._position, self._size)
        return self._position

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
        if self._entry is not None and self._writer is not None and self._writer.error is not None:
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
            if self._entry is not None:
                self._give_up(self._writer.error)
            return self._read_source(size)  # after the end its finalizer reports the failure
        if self._entry is None:
            self._close_source()  # every byte is in the copy now
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
        """The source ended: the entry goes to a finalizer, and the read returns without waiting for it."""
        assert self._writer is not None and self._entry is not None
        entry, self._entry = self._entry, None
        _start_finalizer(self._writer, entry)
        if self._writer.copied():
            self._close_source()  # every byte is in the copy: the backend's buffers go now, else at a read back

    def _drop(self, message: str) -> None:
        """Drop the copy (with ``message`` as a warning, if any) and read the source from now on."""
        if message:
            _warn(message, stacklevel=5)
        if self._entry is not None:  # else the writer is its finalizer's
            assert self._writer is not None
            self._writer.close(discard=True)
            self._entry.end(commit=False)
            self._entry = None
        if self._writer is not None:
            self._writer.close_copy()
            self._writer = None

    def _give_up(self, error: OSError) -> None:
        """Writing failed: no more caching in this process, the bytes from S3 from now on."""
        assert self._entry is not None
        store = self._entry.store
        self._drop("")
        store.writing_failed(self.url, error)

    def _close_source(self) -> None:
        if not self._source_closed:
            self._source_closed = True
            self._source.close()

    def close(self) -> None:
        if not self.closed:
            try:
                self._drop("")
            finally:
                self._close_source()
        super().close()
