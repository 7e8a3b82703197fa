"""Read one object as consecutive ranged GETs, several parts in flight, with bounded memory.

``RangedReader`` is a binary stream over ``fetch(start, end) -> bytes`` or ``fetch_into(start, buffer)``
(one part, retried and resumed by the backend). Up to ``concurrency`` parts are fetched ahead on a small
thread pool while the caller reads the current one. One connection to S3 tops out near 90 MB/s; several
parts in flight add up, on a fast local link as well. Where the parts' memory comes from (new objects, or
reused buffers) is ``parts.py``'s job.

The stream is seekable, so ``tarfile`` (and torchdata's ``load_from_tar()``, which asks ``seekable()``)
reads it in its random-access mode: one read per member instead of its stream mode's 10 KiB pieces, and
members nobody reads are skipped.

Given ``content_md5`` (the ETag of a plain, single-part upload), the parts are hashed in order on one more
thread as they arrive, and the last part is only handed out once the whole object matched it
(:class:`~.parts.Md5Check`).

A reader can also cover bytes ``start .. end-1`` of the object only (a job resumed mid-shard): nothing
outside them is requested, and its offsets stay the object's (see :class:`RangedReader`).
"""
import collections
import concurrent.futures
import io
from typing import Callable, Deque, List, NamedTuple, Optional

from .daemon_pool import DaemonPool
from .parts import Md5Check, PartData, part_source
from .link_sizing import PartSizing, fixed_sizing
from .ranges import check_range, clamp_range, is_whole, seek_target
from .sizing import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE

__all__ = ["RangedReader", "DEFAULT_PART_SIZE", "DEFAULT_CONCURRENCY"]

_NO_PART = memoryview(b"")  # the current part before the first read, when taking one failed, and once closed


class _Part(NamedTuple):
    """One part requested: bytes ``start..end-1`` of the object, arriving in ``data``."""

    start: int
    end: int
    data: "concurrent.futures.Future[PartData]"


class RangedReader(io.RawIOBase):
    """The object at ``url`` (``size`` bytes) as a seekable binary stream of ranged parts, fetched ahead.

    Give one of ``fetch(start, end) -> bytes`` and ``fetch_into(start, buffer)``; each call gets one part of
    ``part_size`` bytes (the last one shorter), retried by the backend, ``concurrency`` in flight; or as
    ``sizing`` says (:mod:`.link_sizing`: parts in flight that grow when a read waits, within its budget).
    ``content_md5``: check the bytes against it (see the module's docstring).

    Byte range: ``start`` and ``end`` (``None``: the object's end; past it, the object's end) make the stream
    bytes ``start .. end-1`` of the object, with the object's offsets: ``tell()`` is ``start`` at first, the
    parts are requested from ``start`` on (``part_size`` each, the first GET at ``start``), reads return
    ``b""`` at ``end``, ``SEEK_END`` counts from ``end``, and a seek before ``start`` is a ``ValueError``.
    ``size`` stays the object's size; ``start`` and ``end`` are attributes too (``end`` clamped to ``size``,
    and never before ``start``: a ``start`` past the object gives an empty stream). ``content_md5`` is only
    checked when the range is the whole object.

    State:

    - the *window*: up to ``concurrency`` parts requested ahead, in order, from the first byte after the
      current part (or after a seek, from the position) up to the first byte not yet requested;
    - the *current part*: the one being read, taken from the front of the window;
    - the *position*: the next byte a read returns. ``seek`` only moves it; the next read finds its part.

    A read inside the current part is a slice of it. Past its end, the read takes the next part from the
    window, drops those wholly before the position (so a seek forward inside the window costs nothing), and
    requests parts to refill the window. A position outside the window (a seek back, or beyond what was
    requested) drops the window and requests parts from the position on; that ends an MD5 check, as
    skipped bytes are never fetched. A part that failed for good fails that read and every later read of
    bytes. Once closed, the window is dropped (a part in flight ends on its thread, unread) and reads and
    seeks raise ``ValueError``.

    Buffers: a part's bytes are the reader's from the moment its fetch returns until the reader releases them
    to its part source (:mod:`.parts`): at once for a part dropped, and for the parts a read moves past,
    once that read returns (what it returns is joined from views of them). With ``fetch`` every part is a
    new object, and a read of exactly one whole ``bytes`` part returns that object, uncopied. With
    ``fetch_into`` the parts are views of reused buffers (at most ``concurrency + 1``, or the budget's worth)
    filled straight from the socket, and reads copy out of them; a buffer dropped while its thread may still
    write into it is never reused. (With ``fetch_into`` and an MD5 check, every part is a new buffer.)

    :meth:`when_all_requested` tells when the last part has been requested (for the next shard's prefetch,
    :mod:`.prefetch`); it requests nothing and holds no buffer.

    Memory: at most ``(concurrency + 1) * part_size`` bytes of parts per open object (with ``sizing``, its
    ``memory_budget``), plus, for a single read longer than that, the read's own size (it holds the parts it
    spans until it has copied them out), and parts dropped while in flight until their threads are done.
    """

    def __init__(
        self,
        url: str,
        size: int,
        fetch: Optional[Callable[[int, int], PartData]] = None,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        content_md5: Optional[str] = None,
        fetch_into: Optional[Callable[[int, memoryview], None]] = None,
        *,
        start: int = 0,
        end: Optional[int] = None,
        etag: Optional[str] = None,
        sizing: Optional[PartSizing] = None,
    ) -> None:
        sizing = sizing or fixed_sizing(part_size, concurrency)
        check_range(url, start, end)
        if not is_whole(start, end, size):
            content_md5 = None  # the MD5 is of the whole object
        self.url = url
        self.size = size
        #: the ETag of the version read, where the backend knows it
        self.etag = etag
        self.start, self.end = clamp_range(start, end, size)
        self._sizing = sizing
        self._parts = part_source(url, self.end, fetch, fetch_into, sizing, content_md5)
        self._md5 = Md5Check(url, content_md5) if content_md5 else None
        self._error: Optional[BaseException] = None  # a part that failed for good fails every later read
        self._position = self.start
        self._part = _NO_PART  # the current part, which starts at byte _part_start
        self._part_start = self.start
        self._window: Deque[_Part] = collections.deque()
        self._next_offset = self.start  # first byte not yet requested: the window's end
        self._steady = False  # a part was taken since opening or the last restart: a wait now is the link's
        self._threads = DaemonPool(sizing.most_in_flight, "s3-part")
        self._on_all_requested: Optional[Callable[[], None]] = None
        self._request_parts()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        self._position = seek_target(self.url, offset, whence, self._position, self.end, self.start)
        return self._position

    def read(self, size: Optional[int] = -1) -> bytes:
        return self.read_after(b"", size)

    def read_after(self, prefix: bytes, size: Optional[int] = -1) -> bytes:
        """``prefix + self.read(size)``, with the bytes copied once (a tar member's first bytes, already read
        ahead, and the rest of it)."""
        self._check_open()
        remaining = max(self.end - self._position, 0)
        size = remaining if size is None or size < 0 else min(size, remaining)
        pieces: List[PartData] = [prefix] if prefix else []
        while size:
            piece = self._current()[:size]
            pieces.append(piece)
            self._position += len(piece)
            size -= len(piece)
        first = pieces[0] if len(pieces) == 1 else None
        if isinstance(first, memoryview) and type(first.obj) is bytes and len(first) == len(first.obj):
            data = first.obj  # a whole part: no copy
        else:
            data = b"".join(pieces)
        self._read_returned()
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._position < self.end:
            piece = self._current()[: len(view) - filled]
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
            self._position += len(piece)
        self._read_returned()
        return filled

    @property
    def checks_content_md5(self) -> bool:
        """Whether the bytes read forward from here on are checked against ``content_md5`` before the last part
        is handed out (a reader that only reads forward stays checked)."""
        return self._md5 is not None

    def when_all_requested(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every part up to ``end`` has been requested (now, if it has been), or the
        stream is closed; once, from the thread reading the stream."""
        if self._next_offset >= self.end or self.closed:
            callback()
        else:
            self._on_all_requested = callback

    def close(self) -> None:
        if not self.closed:
            self._all_requested()
            self._drop_window()
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._stop_md5()
            self._parts.release(self._part)
            self._part = _NO_PART
            self._parts.close()
            self._sizing.finished()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")

    def _current(self) -> memoryview:
        """The bytes of the part holding the position, from the position on (the position is < end)."""
        offset = self._position - self._part_start
        if 0 <= offset < len(self._part):
            return self._part[offset:]
        if self._error is not None:
            raise self._error
        self._parts.hold(self._part)  # what this read returns may be views of it
        self._part = _NO_PART
        if not self._window and self._position == self._next_offset:
            self._request_parts()  # this read spans more parts than the pool has: it lends one more
        if not self._window or not self._window[0].start <= self._position < self._window[-1].end:
            self._restart(self._position)  # a seek back, or beyond the parts requested so far
        while self._window[0].end <= self._position:
            self._parts.release(self._take())  # fetched ahead of a forward seek: hashed, then dropped
        self._part_start = self._window[0].start
        self._part = memoryview(self._take())
        self._request_parts()
        return self._part[self._position - self._part_start:]

    def _take(self) -> PartData:
        """The first part of the window, once fetched (the caller refills the window)."""
        part = self._window.popleft()
        self._sizing.wait_for(part.data, steady=self._steady)
        self._steady = True
        try:
            data = part.data.result()
        except BaseException as error:
            self._error = error
            raise
        if part.end >= self.end and self._md5 is not None:
            md5, self._md5 = self._md5, None  # checked once: a read after a mismatch is not checked again
            md5.verify()
        return data

    def _request_parts(self) -> None:
        """Fill the window up to ``sizing.in_flight`` parts, as far as the part source has memory for them."""
        while len(self._window) < self._sizing.in_flight and self._next_offset < self.end:
            start, end = self._next_offset, min(self._next_offset + self._sizing.part_size, self.end)
            job = self._parts.job(start, end)
            if job is None:
                break  # no buffer free: the read in progress gives back the parts it holds when it returns
            part = _Part(start, end, self._threads.submit(job))
            self._window.append(part)
            if self._md5 is not None:
                self._md5.add(part.data)
            self._next_offset = end
        if self._next_offset >= self.end:
            self._all_requested()

    def _all_requested(self) -> None:
        callback, self._on_all_requested = self._on_all_requested, None
        if callback is not None:
            callback()

    def _read_returned(self) -> None:
        self._parts.read_returned()
        self._request_parts()

    def _restart(self, position: int) -> None:
        """Fetch from ``position`` on: the window does not hold it (a seek back, or far ahead)."""
        self._drop_window()
        self._stop_md5()  # bytes skipped or read again cannot be hashed in order
        self._next_offset = position
        self._steady = False
        self._request_parts()

    def _drop_window(self) -> None:
        for part in self._window:
            part.data.cancel()
            if part.data.done() and not part.data.cancelled() and part.data.exception() is None:
                self._parts.release(part.data.result())
            else:
                self._parts.abandon()  # never fetched, failed, or still being written by its thread
        self._window.clear()

    def _stop_md5(self) -> None:
        if self._md5 is not None:
            self._md5.stop()
            self._md5 = None
