"""Backend ``iopath``: iopath's ``S3PathHandler``, given our client so it needs no AWS profile; the object
read as iopath's ranged reads, several in flight."""
from typing import Any, BinaryIO

from ..clients import process_client
from ..._config import S3Config
from ..ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, RangedReader
from ..retry import call_with_retries
from ..url import parse_s3_url
from ._boto3 import boto3_client
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url"]


def _path_manager(config: S3Config) -> Any:
    def make_path_manager() -> Any:
        from iopath.common.file_io import PathManager
        from iopath.common.s3 import S3PathHandler

        class ConfiguredS3PathHandler(S3PathHandler):
            # iopath builds its client from a named profile ("saml" by default); hand it ours instead.
            def _get_client(self, bucket: str) -> Any:
                return boto3_client(config)

        manager = PathManager()
        manager.register_handler(ConfiguredS3PathHandler(profile=None))
        return manager

    return process_client("iopath", config, make_path_manager)


def open_url(
    url: str, config: S3Config, part_size: int = DEFAULT_PART_SIZE, concurrency: int = DEFAULT_CONCURRENCY, **open_kwargs: Any
) -> BinaryIO:
    """Open with iopath's chunked reader (``S3ChunkReadIO``, not its whole-object download) and read the object
    as iopath's ranged reads of ``part_size`` bytes, ``concurrency`` in flight, each retried on a transient
    fault, like the ``fsspec`` backend (see ``_ranged.py``): seekable, so ``load_from_tar()`` reads members whole."""
    parse_s3_url(url)

    def open_stream() -> Any:
        with botocore_errors_named(url, config):
            return _path_manager(config).open(url, "rb", read_chunk_size=part_size, **open_kwargs)

    stream = call_with_retries(url, config.max_attempts, open_stream)

    def fetch(start: int, end: int) -> bytes:
        def read_range() -> bytes:
            with botocore_errors_named(url, config):
                # iopath's own ranged GET; its range is inclusive: bytes start..end-1
                return stream._read_from_s3(range(start, end - 1))

        return call_with_retries(url, config.max_attempts, read_range)

    return RangedReader(url, stream.length, fetch, part_size, concurrency)  # type: ignore[return-value]
