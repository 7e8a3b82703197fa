"""The ``raw`` and ``raw-parallel`` methods' pieces: a shard's bytes from one streamed GET, or from the ranged
GETs ``auto`` makes (same part size, same number in flight, bodies read into reused buffers), nothing parsed
but the tar headers that count the samples passing by, so the ceilings are reported in the same samples/s as
every other method."""
import collections
import concurrent.futures
import os
from typing import Any, Deque, Iterator, Optional, Tuple

from ..._config import S3Config
from ...s3.stats import process_stats
from ...s3.url import parse_s3_url

__all__ = ["TarSampleCounter", "object_chunks", "object_parts", "raw_chunks"]

_BLOCK = 512


class TarSampleCounter:
    """Fed a tar's bytes in chunks of any size, counts its samples: runs of members sharing a key
    (the member name up to the first dot of its base name, as WebDataset groups them), and their bytes."""

    def __init__(self) -> None:
        self.samples = 0
        self.payload_bytes = 0
        self._last_key: Optional[str] = None
        self._skip = 0  # bytes of member data (and padding) before the next header
        self._header = b""

    def feed(self, chunk: Any) -> None:
        view = memoryview(chunk)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = _BLOCK - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) == _BLOCK:
                self._read_header(self._header)
                self._header = b""

    def _read_header(self, header: bytes) -> None:
        if not header.strip(b"\0"):
            self._last_key = None  # end of this tar: the next one's first sample is new even with the same key
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        self._skip = (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if header[156:157] not in (b"0", b"\0"):
            return  # not a regular file
        self.payload_bytes += size
        full_name = f"{prefix}/{name}" if prefix else name
        directory, base = os.path.split(full_name)
        key = os.path.join(directory, base.split(".", 1)[0])
        if key != self._last_key:
            self.samples += 1
            self._last_key = key


def object_chunks(url: str, config: S3Config, chunk_size: int = 8 << 20) -> Iterator[bytes]:
    """The object's bytes in ``chunk_size`` pieces from one streamed ``get_object``."""
    from ...s3.client.clients import boto3_client

    location = parse_s3_url(url)
    body = boto3_client(config).get_object(Bucket=location.bucket, Key=location.key)["Body"]
    try:
        for chunk in iter(lambda: body.read(chunk_size), b""):
            process_stats().add(bytes_received=len(chunk))
            yield chunk
    finally:
        body.close()


def object_parts(url: str, config: S3Config, part_size: int, concurrency: int) -> Iterator[memoryview]:
    """The object's bytes as ``auto`` fetches them: ranged GETs of ``part_size`` bytes, ``concurrency`` in
    flight on a thread pool, each body read straight into one of ``concurrency + 1`` reused buffers (by the
    ``boto3`` backend's own body reader), the first GET telling the size. Yields a view of each part in order,
    valid until the next one is asked for; no retries, no ETag pinning, no checks beyond the length."""
    from ...s3.backends._boto3 import _read_body_into
    from ...s3.client.clients import boto3_client

    location = parse_s3_url(url)
    client = boto3_client(config)

    def get(start: int, end: int) -> Any:
        return client.get_object(Bucket=location.bucket, Key=location.key, Range=f"bytes={start}-{end - 1}")

    first = get(0, part_size)
    size = int(first["ContentRange"].rsplit("/", 1)[1])

    def fill(response: Any, start: int, buffer: bytearray) -> memoryview:
        view = memoryview(buffer)[: min(part_size, size - start)]
        filled = _read_body_into((response or get(start, start + len(view)))["Body"], view)
        process_stats().add(bytes_received=filled)
        if filled != len(view):
            raise OSError(f"{url}: bytes {start}-{start + len(view) - 1} came back as {filled} bytes")
        return view

    free = [bytearray(part_size) for _ in range(concurrency + 1)]
    window: Deque[Tuple[bytearray, "concurrent.futures.Future[memoryview]"]] = collections.deque()
    next_start = 0
    with concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="raw-part") as pool:
        try:
            while window or next_start < size:
                while len(window) < concurrency and next_start < size:
                    buffer = free.pop()
                    window.append((buffer, pool.submit(fill, first if next_start == 0 else None, next_start, buffer)))
                    next_start += part_size
                buffer, part = window.popleft()
                yield part.result()
                free.append(buffer)  # the consumer is done with its view
        finally:
            for _, part in window:
                part.cancel()


def raw_chunks(parallel: bool, url: str, config: S3Config, part_size: Optional[int], concurrency: Optional[int]) -> Iterator[Any]:
    """``raw-parallel``'s parts (``None``: ``auto``'s defaults) if ``parallel``, else ``raw``'s single stream."""
    from ...s3.io.ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE

    if not parallel:
        return object_chunks(url, config)
    return object_parts(url, config, part_size or DEFAULT_PART_SIZE, concurrency or DEFAULT_CONCURRENCY)
