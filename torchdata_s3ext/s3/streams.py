"""Readable, forward-only binary streams over an S3 object body, buffered in large reads."""
import io
from typing import Callable, Optional

from .retry import call_with_retries
from .stats import process_stats

__all__ = ["ChunkReader", "ResumingReader", "buffered"]

DEFAULT_BUFFER_SIZE = 1 << 20


class ChunkReader(io.RawIOBase):
    """A raw stream over ``read_chunk(n) -> bytes`` that checks it delivered ``expected_size`` bytes.

    A body that ends early is reported as an error naming the URL instead of passing as a shorter shard.
    """

    def __init__(
        self,
        url: str,
        read_chunk: Callable[[int], bytes],
        close: Optional[Callable[[], None]] = None,
        expected_size: Optional[int] = None,
    ) -> None:
        self.url = url
        self._read_chunk = read_chunk
        self._close = close
        self.expected_size = expected_size
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        chunk = self._read_chunk(len(view))
        n = len(chunk)
        if n == 0 and self.expected_size is not None and self.bytes_read != self.expected_size:
            raise OSError(f"{self.url}: body ended after {self.bytes_read} of {self.expected_size} bytes")
        view[:n] = chunk
        self.bytes_read += n
        process_stats().add(bytes_received=n)
        return n

    def close(self) -> None:
        if not self.closed and self._close is not None:
            self._close()
        super().close()


def buffered(raw: io.RawIOBase, buffer_size: int = DEFAULT_BUFFER_SIZE) -> io.BufferedReader:
    """``raw`` behind a large read buffer, so the tar reader's 10 KiB reads do not each reach the socket."""
    return io.BufferedReader(raw, buffer_size=buffer_size)


class ResumingReader(io.RawIOBase):
    """A stream that survives transient faults: on one, it reopens the object at the byte it reached.

    ``open_at(offset)`` opens the object from ``offset`` (a ranged GET, or a command asked for a range). A read
    is attempted up to ``max_attempts`` times, through :func:`~.retry.call_with_retries`.
    """

    def __init__(self, url: str, open_at: Callable[[int], io.RawIOBase], max_attempts: int) -> None:
        self.url = url
        self._open_at = open_at
        self._max_attempts = max_attempts
        self.position = 0
        self.resumes = 0
        self._stream = open_at(0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        def read_once() -> int:
            n = self._stream.readinto(buffer) or 0
            self.position += n
            return n

        return call_with_retries(
            self.url, self._max_attempts, read_once, before_retry=self._reopen, position=lambda: self.position
        )

    def _reopen(self) -> None:
        self.resumes += 1
        self._stream.close()
        self._stream = self._open_at(self.position)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()
