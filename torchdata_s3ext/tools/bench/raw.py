"""The ``raw`` method's pieces: stream the shards' bytes with plain GETs and count the samples passing by
from the tar headers alone, so the ceiling is reported in the same samples/s as every other method."""
import os
from typing import Iterator, Optional

from ..._config import S3Config
from ...s3.stats import process_stats
from ...s3.url import parse_s3_url

__all__ = ["TarSampleCounter", "object_chunks"]

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

    def feed(self, chunk: bytes) -> None:
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
    from ...s3.clients import boto3_client

    location = parse_s3_url(url)
    body = boto3_client(config).get_object(Bucket=location.bucket, Key=location.key)["Body"]
    try:
        for chunk in iter(lambda: body.read(chunk_size), b""):
            process_stats().add(bytes_received=len(chunk))
            yield chunk
    finally:
        body.close()
