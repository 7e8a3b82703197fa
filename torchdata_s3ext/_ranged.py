"""Read one object as consecutive ranged GETs, several parts in flight, in order, with bounded memory.

``RangedReader`` is a forward-only binary stream over ``fetch(start, end) -> bytes`` (one part, retried and
resumed by the backend). Up to ``concurrency`` parts are fetched ahead on a small thread pool while the
caller reads the current one, so at most ``(concurrency + 1) * part_size`` bytes are held per open object.
One connection to S3 tops out near 90 MB/s; several parts in flight add up, on a fast local link as well.

Given ``content_md5`` (the ETag of a plain, single-part upload), the parts are hashed in order on one more
thread as they arrive, and the last part is only handed out once the whole object matched it.
"""
import collections
import concurrent.futures
import hashlib
import io
from typing import Callable, Deque, Optional

from ._stats import process_stats

__all__ = ["RangedReader", "DEFAULT_PART_SIZE", "DEFAULT_CONCURRENCY"]

DEFAULT_PART_SIZE = 8 << 20
DEFAULT_CONCURRENCY = 4


class RangedReader(io.RawIOBase):
    def __init__(
        self,
        url: str,
        size: int,
        fetch: Callable[[int, int], bytes],
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        first_part: Optional[bytes] = None,
        content_md5: Optional[str] = None,
    ) -> None:
        if part_size < 1 or concurrency < 1:
            raise ValueError(f"part_size and concurrency must be positive, got {part_size} and {concurrency}")
        self.url = url
        self.size = size
        self._fetch = fetch
        self._part_size = part_size
        self._next_offset = 0  # first byte not yet requested
        self._position = 0  # first byte not yet returned
        self._part = memoryview(b"")
        self._pending: Deque["concurrent.futures.Future[bytes]"] = collections.deque()
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part") if size else None
        self._concurrency = concurrency
        self._content_md5 = content_md5
        self._md5 = hashlib.md5()
        self._hashed: Optional["concurrent.futures.Future[None]"] = None
        self._hasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3-md5") if content_md5 else None
        if first_part is not None:
            process_stats().add(bytes_received=len(first_part))
            self._part = memoryview(first_part)
            self._next_offset = len(first_part)
            self._hash_in_order(first_part)
        self._fill_window()
        if self._next_offset >= self.size and not self._pending:
            self._check_md5()

    def readable(self) -> bool:
        return True

    def _fill_window(self) -> None:
        while self._pool is not None and len(self._pending) < self._concurrency and self._next_offset < self.size:
            end = min(self._next_offset + self._part_size, self.size)
            part = self._pool.submit(self._checked_fetch, self._next_offset, end)
            self._pending.append(part)
            self._hash_in_order(part)
            self._next_offset = end

    def _hash_in_order(self, part: "bytes | concurrent.futures.Future[bytes]") -> None:
        # One hashing thread takes the parts in the order they were requested, whenever each arrives.
        if self._hasher is not None:
            data_of = part.result if isinstance(part, concurrent.futures.Future) else lambda: part
            self._hashed = self._hasher.submit(lambda: self._md5.update(data_of()))

    def _check_md5(self) -> None:
        """Raise unless the object's bytes match ``content_md5`` (called before the last part is handed out)."""
        if self._hashed is None:
            return
        self._hashed.result()
        self._hashed = None
        digest = self._md5.hexdigest()
        if digest != self._content_md5:
            raise OSError(f"{self.url}: the bytes received do not match the object's ETag "
                          f"(MD5 {digest}, ETag {self._content_md5})")

    def _checked_fetch(self, start: int, end: int) -> bytes:
        data = self._fetch(start, end)
        process_stats().add(bytes_received=len(data))
        if len(data) != end - start:
            raise OSError(f"{self.url}: bytes {start}-{end - 1} came back as {len(data)} bytes, not {end - start}")
        return data

    def _next_part(self) -> bool:
        if not self._pending:
            return False
        part = self._pending.popleft().result()
        self._fill_window()
        if not self._pending:
            self._check_md5()
        self._part = memoryview(part)
        return True

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError(f"read from a closed stream ({self.url})")
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._part_size), b""))
        while not self._part and self._next_part():
            pass
        chunk = self._part[:size]
        self._part = self._part[len(chunk):]
        self._position += len(chunk)
        return chunk.tobytes()

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        chunk = self.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed and self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pending.clear()
        if self._hasher is not None:
            self._hasher.shutdown(wait=False, cancel_futures=True)
        self._part = memoryview(b"")
        super().close()
