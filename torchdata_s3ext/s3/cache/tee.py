"""The local shard cache's miss: the backend's stream of a whole shard, its bytes copied into the cache entry
as they are read, on a thread of its own (:class:`TeeReader`), then checked and put in place in the background
once the last byte is read (the reader does not wait: the bytes it serves are the backend's either way, and
the check only decides whether the copy becomes an entry); see :mod:`.opening` for when it is used.

What becomes of the copy, and what a process exiting waits for, is :mod:`.entry`'s.
"""
import io
import os
from typing import Any, BinaryIO, Callable, Optional

from ..io.ranges import seek_target
from .entry import CacheEntry, start_finalizer, warn
from .writer import CacheWriter

__all__ = ["TeeReader"]

_GAP_CHUNK = 8 << 20


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
        start_finalizer(self._writer, entry)
        if self._writer.copied():
            self._close_source()  # every byte is in the copy: the backend's buffers go now, else at a read back

    def _drop(self, message: str) -> None:
        """Drop the copy (with ``message`` as a warning, if any) and read the source from now on."""
        if message:
            warn(message, stacklevel=5)
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
