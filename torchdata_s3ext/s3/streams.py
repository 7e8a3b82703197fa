"""Readable binary streams over an S3 object body: size-checked, resumed at the byte reached, buffered in
large reads, or cut to a byte range of the object (``start .. end-1``, with absolute offsets)."""
import io
from typing import Callable, Optional, Tuple

from .client.errors import ShortRead, WrongLength
from .client.retry import Attempts, call_with_retries
from .stats import process_stats

__all__ = ["ByteRange", "ChunkReader", "MIN_PROGRESS", "RESUMES_PER_ATTEMPT", "ResumingReader", "buffered", "check_range",
           "check_part_length", "clamp_range", "empty_range", "is_empty", "is_whole", "seek_target"]

DEFAULT_BUFFER_SIZE = 1 << 20
#: what a fault run must advance a :class:`ResumingReader` before its attempts are counted afresh
MIN_PROGRESS = 1 << 20
#: a :class:`ResumingReader` resumes at most this many times ``max_attempts`` in all
RESUMES_PER_ATTEMPT = 8


def check_range(url: str, start: int, end: Optional[int]) -> None:
    """``ValueError`` naming ``url`` unless ``0 <= start <= end`` (``end=None``: the object's end).

    >>> check_range("s3://bkt/a.tar", 10, 5)
    Traceback (most recent call last):
    ...
    ValueError: byte range start=10, end=5 of 's3://bkt/a.tar': start must be 0 or more and at most end
    """
    if start < 0 or (end is not None and (end < 0 or start > end)):
        raise ValueError(f"byte range start={start}, end={end} of {url!r}: start must be 0 or more and at most end")


def clamp_range(start: int, end: Optional[int], size: int) -> Tuple[int, int]:
    """Where a stream of bytes ``start .. end-1`` of a ``size``-byte object ends: at ``end``, at most at the
    object's end, never before ``start`` (a ``start`` past the end gives an empty stream there).

    >>> clamp_range(0, None, 100), clamp_range(10, 500, 100), clamp_range(300, None, 100)
    ((0, 100), (10, 100), (300, 300))
    """
    return start, max(start, size if end is None else min(end, size))


def seek_target(url: str, offset: int, whence: int, position: int, end: Optional[int], start: int = 0) -> int:
    """Where ``seek(offset, whence)`` goes in a stream at ``position`` whose bytes run ``start .. end`` (at the
    object's offsets); ``ValueError`` naming ``url`` for an unknown ``whence`` or a place before ``start``."""
    origins = {io.SEEK_SET: 0, io.SEEK_CUR: position, io.SEEK_END: end}
    if whence not in origins:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    target = origins[whence] + offset  # type: ignore[operator]
    if target < 0:
        raise ValueError(f"negative seek position {target} in {url}")
    if target < start:
        raise ValueError(f"seek to {target}, before the start of the byte range {start}-{end} of {url}")
    return target


def check_part_length(url: str, data: bytes, start: int, end: int) -> bytes:
    """``data``, checked to be the ``end - start`` bytes a part asked for; else a :class:`~.errors.WrongLength`
    naming ``url`` and the part (transient: the part is fetched again)."""
    if len(data) != end - start:
        raise WrongLength(f"{url}: bytes {start}-{end - 1} came back as {len(data)} bytes, not {end - start}")
    return data


def is_empty(start: int, end: Optional[int], size: int) -> bool:
    """Whether bytes ``start .. end-1`` of a ``size``-byte object are none at all.

    >>> is_empty(5, 5, 100), is_empty(100, None, 100), is_empty(0, 1, 100)
    (True, True, False)
    """
    clamped_start, clamped_end = clamp_range(start, end, size)
    return clamped_start == clamped_end


def is_whole(start: int, end: Optional[int], size: Optional[int] = None) -> bool:
    """Whether bytes ``start .. end-1`` are the whole object (``size``, where known)."""
    return start == 0 and (end is None or (size is not None and end >= size))


class ChunkReader(io.RawIOBase):
    """A raw stream over ``read_chunk(n) -> bytes`` (bytes ``start ..`` of an object) that checks it delivers
    exactly ``expected_size`` bytes.

    A body that ends early is a :class:`~.errors.ShortRead`, one that runs past ``expected_size`` a
    :class:`~.errors.WrongLength` raised before any byte past it is handed out, both naming the URL and the
    byte reached (transient: a resuming reader tries again from there), instead of passing as a shorter or
    longer shard.
    """

    def __init__(
        self,
        url: str,
        read_chunk: Callable[[int], bytes],
        close: Optional[Callable[[], None]] = None,
        expected_size: Optional[int] = None,
        start: int = 0,
    ) -> None:
        self.url = url
        self._read_chunk = read_chunk
        self._close = close
        self.expected_size = expected_size
        self.start = start
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        chunk = self._read_chunk(len(view))
        n = len(chunk)
        if self.expected_size is not None:
            self._check_length(n)
        view[:n] = chunk
        self.bytes_read += n
        process_stats().add(bytes_received=n)
        return n

    def _check_length(self, received: int) -> None:
        """Raise if a read of ``received`` bytes (0: the end) leaves the body shorter or longer than promised."""
        reached = self.start + self.bytes_read
        if received == 0 and self.bytes_read < self.expected_size:  # type: ignore[operator]
            raise ShortRead(f"{self.url}: body ended at byte {reached}, after {self.bytes_read} of the "
                            f"{self.expected_size} bytes promised")
        if self.bytes_read + received > self.expected_size:  # type: ignore[operator]
            raise WrongLength(f"{self.url}: body ran past the {self.expected_size} bytes promised, at byte {reached}")

    def close(self) -> None:
        if not self.closed and self._close is not None:
            self._close()
        super().close()


def buffered(raw: io.RawIOBase, buffer_size: int = DEFAULT_BUFFER_SIZE) -> io.BufferedReader:
    """``raw`` behind a large read buffer, so the tar reader's 10 KiB reads do not each reach the socket."""
    return io.BufferedReader(raw, buffer_size=buffer_size)


class ByteRange(io.RawIOBase):
    """Bytes ``start .. end-1`` of ``inner`` (a readable binary stream, now at ``inner_position``), with the
    offsets of ``inner``: ``tell()`` is ``start`` at first, and reads return ``b""`` at ``end`` (``None``: at
    ``inner``'s end).

    Reaching ``start`` waits for the first read: ``inner`` is seeked there when ``seekable`` (and the stream can
    then seek anywhere in ``start .. end``, ``SEEK_END`` from ``end``, which must be given; before ``start`` is
    a ``ValueError`` naming ``url``), else the bytes before it are read and dropped (a command's stdout).
    Closing closes ``inner``.
    """

    def __init__(
        self, url: str, inner: io.IOBase, start: int, end: Optional[int] = None, *, inner_position: int = 0,
        seekable: bool = False,
    ) -> None:
        check_range(url, start, end)
        if seekable and end is None:
            raise ValueError(f"a seekable byte range of {url!r} needs its end")
        self.url = url
        self.start = start
        self.end = end
        self._inner = inner
        self._inner_position = inner_position
        self._position = start
        self._seekable = seekable

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if not self._seekable:
            raise io.UnsupportedOperation(f"seek in a forward-only stream ({self.url})")
        self._position = seek_target(self.url, offset, whence, self._position, self.end, self.start)
        return self._position

    def read(self, size: Optional[int] = -1) -> bytes:
        self._check_open()
        wanted = self._wanted(size)
        if wanted == 0 or not self._reach_position():
            return b""
        data = self._inner.read(wanted) if wanted > 0 else self._inner.read()  # type: ignore[attr-defined]
        self._advance(len(data))
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        wanted = self._wanted(len(view))
        if wanted == 0 or not self._reach_position():
            return 0
        count = self._inner.readinto(view[:wanted]) or 0  # type: ignore[attr-defined]
        self._advance(count)
        return count

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on a closed stream ({self.url})")

    def _wanted(self, size: Optional[int]) -> int:
        """How many bytes a read of ``size`` may return (-1: all up to ``inner``'s end)."""
        if self.end is None:
            return -1 if size is None or size < 0 else size
        remaining = max(self.end - self._position, 0)
        return remaining if size is None or size < 0 else min(size, remaining)

    def _advance(self, count: int) -> None:
        self._position += count
        self._inner_position += count

    def _reach_position(self) -> bool:
        """Bring ``inner`` to the position; ``False`` if it ended before (the range is then empty)."""
        if self._inner_position == self._position:
            return True
        if self._seekable:
            self._inner.seek(self._position)
            self._inner_position = self._position
            return True
        while self._inner_position < self._position:  # forward only: the bytes before are read and dropped
            wanted = min(self._position - self._inner_position, DEFAULT_BUFFER_SIZE)
            skipped = self._inner.read(wanted)  # type: ignore[attr-defined]
            if not skipped:
                self.end = self._position  # the stream ended before start
                return False
            self._inner_position += len(skipped)
        return True


def empty_range(url: str, start: int) -> ByteRange:
    """An empty byte range at ``start`` (a backend asked for no bytes makes no GET)."""
    return ByteRange(url, io.BytesIO(), start, start, inner_position=start, seekable=True)


class ResumingReader(io.RawIOBase):
    """A stream that survives transient faults: on one, it reopens the object at the byte it reached.

    ``open_at(offset)`` opens the object from ``offset`` (a ranged GET, or a command asked for a range), the
    first time at ``start``; ``position`` is the object's offset of the next byte read. Each
    read goes through :func:`~.retry.call_with_retries` with one :class:`~.retry.Attempts` kept for the whole
    stream, so how many resumes a stream may make is bounded twice over:

    - a *fault run* starts at a transient fault and gets ``max_attempts`` attempts in all (the failed read
      included), as one request does; it ends only once the stream has advanced ``min_progress`` bytes (1 MiB
      by default) past the byte where it started, so a link that delivers a little and stalls again cannot
      renew the run with each resume;
    - the whole stream may resume at most ``max_resumes`` times (``RESUMES_PER_ATTEMPT * max_attempts`` by
      default: 24 for the default ``max_attempts=3``), however much each resume advanced.

    Either bound spent ends in an ``OSError`` naming the URL, the byte reached and the resumes made, the last
    fault as its ``__cause__``. A failure that is not transient is raised as it is, at once.
    """

    def __init__(
        self,
        url: str,
        open_at: Callable[[int], io.RawIOBase],
        max_attempts: int,
        min_progress: int = MIN_PROGRESS,
        max_resumes: Optional[int] = None,
        start: int = 0,
    ) -> None:
        self.url = url
        self._open_at = open_at
        self.max_attempts = max_attempts
        self.position = start
        self._attempts = Attempts(
            max_attempts, min_progress, RESUMES_PER_ATTEMPT * max_attempts if max_resumes is None else max_resumes
        )
        self._stream: Optional[io.RawIOBase] = open_at(start)

    @property
    def min_progress(self) -> int:
        return self._attempts.min_progress  # type: ignore[return-value]

    @property
    def max_resumes(self) -> int:
        return self._attempts.max_retries  # type: ignore[return-value]

    @property
    def resumes(self) -> int:
        return self._attempts.retries

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        def read_once() -> int:
            try:
                if self._stream is None:
                    self._stream = self._open_at(self.position)
                n = self._stream.readinto(buffer) or 0
            except Exception:
                self._drop_stream()  # before the wait: a stalled CLI process or GET holds its resources till then
                raise
            self.position += n
            return n

        return call_with_retries(self.url, self.max_attempts, read_once, position=lambda: self.position,
                                 attempts=self._attempts)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> None:
        if not self.closed and self._stream is not None:
            self._stream.close()
        super().close()
