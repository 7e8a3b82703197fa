"""Backend ``iopath``: iopath's ``S3PathHandler``, given our client so it needs no AWS profile."""
from typing import Any, BinaryIO

from .._clients import process_client
from .._config import S3Config
from .._streams import ChunkReader, ResumingReader, buffered, skipping
from .._url import parse_s3_url
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


def open_url(url: str, config: S3Config, read_chunk_size: int = 8 << 20, **open_kwargs: Any) -> BinaryIO:
    """Open with iopath's chunked reader (``read_chunk_size`` bytes per ranged GET), not its whole-object
    download. iopath cannot open at an offset: after a transient fault the object is reopened and the bytes
    already read are skipped."""
    parse_s3_url(url)

    def open_stream() -> Any:
        with botocore_errors_named(url, config):
            return _path_manager(config).open(url, "rb", read_chunk_size=read_chunk_size, **open_kwargs)

    def read_chunk(stream: Any) -> Any:
        def read(size: int) -> bytes:
            with botocore_errors_named(url, config):
                return stream.read(size)

        return read

    def open_raw() -> ChunkReader:
        stream = open_stream()
        return ChunkReader(url, read_chunk(stream), close=stream.close, expected_size=stream.length)

    return buffered(ResumingReader(url, skipping(open_raw), config.max_attempts))  # type: ignore[return-value]
