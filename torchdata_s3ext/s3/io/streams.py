"""Readable binary streams over an S3 object body: read in chunks and size-checked (:class:`ChunkReader`),
resumed at the byte reached (:class:`ResumingReader`), buffered in large reads (:func:`buffered`)."""
import io
from typing import Callable, Optional

from ..client.errors import ShortRead, WrongLength
from ..client.retry import Attempts, call_with_retries
from ..stats import process_stats

__all__ = ["ChunkReader", "MIN_PROGRESS", "RESUMES_PER_ATTEMPT", "ResumingReader", "buffered"]

DEFAULT_BUFFER_SIZE = 1 << 20
#: what a fault run must advance a :class:`ResumingReader` before its attempts are counted afresh
MIN_PROGRESS = 1 << 20
#: a :class:`ResumingReader` resumes at most this many times ``max_attempts`` in all
RESUMES_PER_ATTEMPT = 8


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
