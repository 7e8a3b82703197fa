"""Readable, forward-only binary streams over an S3 object body, buffered in large reads."""
import io
from typing import Callable, Optional

from .retry import backoff_sleep, is_transient
from .stats import process_stats

__all__ = ["ChunkReader", "ResumingReader", "buffered", "skipping"]

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

    ``open_at(offset)`` opens the object from ``offset`` (a ranged GET, or a fresh stream with the first
    ``offset`` bytes skipped, see :func:`skipping`). At most ``max_attempts`` opens per fault run.
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
        attempt = 1
        while True:
            try:
                n = self._stream.readinto(buffer)
                self.position += n or 0
                return n or 0
            except Exception as error:
                if not is_transient(error) or attempt >= self._max_attempts:
                    if is_transient(error):
                        raise OSError(f"{self.url}: gave up at byte {self.position} after {attempt} attempts: {error}") from error
                    raise
                backoff_sleep(attempt)
                attempt += 1
                self.resumes += 1
                self._stream.close()
                self._stream = self._open_at(self.position)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def skipping(open_stream: Callable[[], io.RawIOBase]) -> Callable[[int], io.RawIOBase]:
    """``open_at`` for a backend that cannot open at an offset: open afresh and discard ``offset`` bytes."""

    def open_at(offset: int) -> io.RawIOBase:
        stream = open_stream()
        remaining = offset
        while remaining:
            skipped = len(stream.read(min(remaining, DEFAULT_BUFFER_SIZE)))
            if not skipped:
                raise OSError(f"object shorter than the {offset} bytes already read")
            remaining -= skipped
        return stream

    return open_at
