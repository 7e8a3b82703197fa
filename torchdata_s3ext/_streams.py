"""Readable, forward-only binary streams over an S3 object body, buffered in large reads."""
import io
from typing import Callable, Optional

__all__ = ["ChunkReader", "buffered"]

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
        return n

    def close(self) -> None:
        if not self.closed and self._close is not None:
            self._close()
        super().close()


def buffered(raw: io.RawIOBase, buffer_size: int = DEFAULT_BUFFER_SIZE) -> io.BufferedReader:
    """``raw`` behind a large read buffer, so the tar reader's 10 KiB reads do not each reach the socket."""
    return io.BufferedReader(raw, buffer_size=buffer_size)
