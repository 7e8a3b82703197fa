"""Backend ``s3fileloader``: torchdata's native ``S3FileLoader`` (AWS C++ SDK).

It downloads each object whole into memory (``BytesIO``); memory therefore grows with the shard size. Our
settings reach it through the ``S3_ENDPOINT_URL`` / ``S3_USE_HTTPS`` / ``S3_VERIFY_SSL`` variables it reads
when its handler is made. Since the handler can end a download early on a timeout without raising, the
bytes received are checked against the object's size and a short read is retried, then reported.
"""
import io
from typing import Any, BinaryIO

from ..clients import process_client
from ..._config import S3Config
from ..environ import scoped_environ
from ..retry import ShortRead, TransientError, call_with_retries
from ..stats import process_stats
from ..url import parse_s3_url
from ._boto3 import boto3_client
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url"]

ALTERNATIVES = "boto3, fsspec, iopath, awscli, s3torchconnector"


def _native_handler(config: S3Config, request_timeout_ms: int) -> Any:
    def make_handler() -> Any:
        import torchdata

        extension = getattr(torchdata, "_torchdata", None)
        if extension is None or not hasattr(extension, "S3Handler"):
            raise ModuleNotFoundError(
                "the s3fileloader backend needs torchdata's native S3 extension (torchdata._torchdata.S3Handler), "
                f"which this torchdata install lacks; use another backend: {ALTERNATIVES}"
            )
        env = config.credential_env()
        if config.endpoint_url:
            env["S3_ENDPOINT_URL"] = config.endpoint_url.split("://", 1)[1]
            env["S3_USE_HTTPS"] = "1" if config.use_https else "0"
            env["S3_VERIFY_SSL"] = "1" if config.verify_ssl else "0"
        with scoped_environ(env):
            return extension.S3Handler(request_timeout_ms, config.region or "us-east-1")

    return process_client("s3fileloader", (config, request_timeout_ms), make_handler)


def open_url(url: str, config: S3Config, request_timeout_ms: int = -1) -> BinaryIO:
    """The object, downloaded whole by torchdata's native handler. ``request_timeout_ms=-1`` leaves the
    native client its own timeout, as ``S3FileLoader`` does (passing ``S3Config.read_timeout`` there made
    downloads about 15 % slower, measured); a download that timeout cuts short fails the size check and is
    retried."""
    location = parse_s3_url(url)
    with botocore_errors_named(url, config):
        expected_size = boto3_client(config).head_object(Bucket=location.bucket, Key=location.key)["ContentLength"]
    handler = _native_handler(config, request_timeout_ms)

    def read_whole_object() -> bytes:
        process_stats().add(gets=1)  # as we see it: one read; the native client may split it in parts
        try:
            data = handler.s3_read(url)
        except ValueError as error:  # how the native handler reports curl and S3 errors
            raise TransientError(f"{url}: torchdata's S3 handler failed: {error}") from error
        process_stats().add(bytes_received=len(data))
        if len(data) != expected_size:
            raise ShortRead(f"{url}: torchdata's S3 handler returned {len(data)} of {expected_size} bytes")
        return data

    return io.BytesIO(call_with_retries(url, config.max_attempts, read_whole_object))
