"""Backend ``s3torchconnector``: AWS's CRT-based client, whose GET streams an object in parallel parts.

The object is streamed straight from the CRT's part stream, not through s3torchconnector's sequential
reader (which keeps every byte read so far in memory). Needs ``pip install torchdata-s3ext[s3torchconnector]``.
"""
from typing import Any, BinaryIO

from ..clients import process_client
from ..._config import S3Config
from ..environ import scoped_environ
from ..errors import translate_client_error
from ..retry import TransientError
from ..stats import process_stats
from ..streams import ChunkReader, ResumingReader, buffered
from ..url import parse_s3_url

__all__ = ["open_url"]


def _client(config: S3Config, part_size: int) -> Any:
    def make_client() -> Any:
        try:
            from s3torchconnector import S3ClientConfig
            from s3torchconnector._s3client import S3Client
        except ImportError as error:
            raise ModuleNotFoundError(
                "the s3torchconnector backend needs `pip install torchdata-s3ext[s3torchconnector]`"
            ) from error
        client_config = S3ClientConfig(
            part_size=part_size,
            unsigned=config.anonymous,
            force_path_style=config.endpoint_url is not None,
            max_attempts=config.max_attempts,
            profile=config.profile,
        )
        return S3Client(config.region or "us-east-1", endpoint=config.endpoint_url, s3client_config=client_config)

    return process_client("s3torchconnector", (config, part_size), make_client)


_TRANSIENT_MARKS = ("SlowDown", "503", "500", "reset", "timed out", "timeout", "closed", "Connection", "broken")


def _translate(url: str, error: Exception) -> OSError:
    message = str(error)
    for code in ("NoSuchBucket", "NoSuchKey", "AccessDenied", "Forbidden"):
        if code in message:
            return translate_client_error(url, code, message)
    if "not found" in message.lower() or "404" in message:
        return translate_client_error(url, "404", message)
    if "403" in message:
        return translate_client_error(url, "403", message)
    if any(mark in message for mark in _TRANSIENT_MARKS):
        return TransientError(f"{url}: {message}")
    return OSError(f"{url}: {message}")


def open_url(url: str, config: S3Config, part_size: int = 8 << 20, buffer_size: int = 1 << 20) -> BinaryIO:
    """Stream ``url`` from the CRT's part stream; a cut stream resumes with a GET from the byte reached."""
    location = parse_s3_url(url)
    client = _client(config, part_size)
    try:
        # The native client reads credentials from the environment when it signs; give it ours.
        with scoped_environ(config.credential_env()):
            size = client.head_object(location.bucket, location.key).size
        process_stats().add(heads=1)
    except Exception as error:
        raise _translate(url, error) from error

    def open_at(offset: int) -> ChunkReader:
        # The CRT splits one GET into ranged GETs of ``part_size``; counted as such, not seen one by one.
        process_stats().add(gets=max(1, -(-(size - offset) // part_size)))
        try:
            with scoped_environ(config.credential_env()):
                parts = iter(client._get_object_stream(location.bucket, location.key, start=offset, end=size))
        except Exception as error:
            raise _translate(url, error) from error
        pending = memoryview(b"")

        def read_chunk(size_wanted: int) -> bytes:
            nonlocal pending
            while not pending:
                try:
                    pending = memoryview(next(parts))
                except StopIteration:
                    return b""
                except Exception as error:
                    raise _translate(url, error) from error
            chunk, pending = pending[:size_wanted], pending[size_wanted:]
            return chunk.tobytes()

        return ChunkReader(url, read_chunk, expected_size=size - offset)

    return buffered(ResumingReader(url, open_at, config.max_attempts), buffer_size)  # type: ignore[return-value]
