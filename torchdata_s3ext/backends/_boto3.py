"""Backend ``boto3``: one streamed ``get_object`` per shard, read through a large buffer."""
from typing import Any, BinaryIO

from .._clients import process_client
from .._config import S3Config
from .._streams import ChunkReader, buffered
from .._url import parse_s3_url
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url", "boto3_client"]


def boto3_client(config: S3Config) -> Any:
    """This process's boto3 S3 client for ``config``."""

    def make_client() -> Any:
        import boto3

        session = boto3.session.Session(profile_name=config.profile) if config.profile else boto3.session.Session()
        return session.client("s3", **config.boto3_client_kwargs())

    return process_client("boto3", config, make_client)


def open_url(url: str, config: S3Config, buffer_size: int = 1 << 20, **get_object_kwargs: Any) -> BinaryIO:
    location = parse_s3_url(url)
    with botocore_errors_named(url, config):
        response = boto3_client(config).get_object(Bucket=location.bucket, Key=location.key, **get_object_kwargs)
    body = response["Body"]

    def read_chunk(size: int) -> bytes:
        with botocore_errors_named(url, config):
            return body.read(size)

    raw = ChunkReader(url, read_chunk, close=body.close, expected_size=response.get("ContentLength"))
    return buffered(raw, buffer_size)  # type: ignore[return-value]
