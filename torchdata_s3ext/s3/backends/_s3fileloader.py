"""Backend ``s3fileloader``: torchdata's native ``S3FileLoader`` (AWS C++ SDK).

It downloads each object whole into memory (``BytesIO``); memory therefore grows with the shard size. Our
settings reach it through the environment when its handler is made (``clients.native_s3_handler``). Since the
handler can end a download early on a timeout without raising, the bytes received are checked against the
object's size and a short read is retried, then reported.
"""
import io
from typing import BinaryIO

from ..._config import S3Config
from ..clients import boto3_client, native_s3_handler
from ..errors import CONNECTION_BROKEN, ClientReport, ShortRead, botocore_errors_translated, translate_report
from ..retry import call_with_retries
from ..stats import process_stats
from ..url import parse_s3_url

__all__ = ["open_url"]

ALTERNATIVES = "boto3, fsspec, iopath, awscli, s3torchconnector"


def open_url(url: str, config: S3Config, request_timeout_ms: int = -1) -> BinaryIO:
    """The object, downloaded whole by torchdata's native handler. ``request_timeout_ms=-1`` leaves the
    native client its own timeout, as ``S3FileLoader`` does (passing ``S3Config.read_timeout`` there made
    downloads slower); a download that timeout cuts short fails the size check and is retried."""
    location = parse_s3_url(url)
    with botocore_errors_translated(url, config):
        expected_size = boto3_client(config).head_object(Bucket=location.bucket, Key=location.key)["ContentLength"]
    handler = native_s3_handler(config, request_timeout_ms, ALTERNATIVES)

    def read_whole_object() -> bytes:
        process_stats().add(gets=1)  # as we see it: one read; the native client may split it in parts
        try:
            data = handler.s3_read(url)
        except ValueError as error:  # how the native handler reports curl and S3 errors
            # Its messages carry no S3 error code; the HEAD above found the object, so a failing read is
            # taken as a broken transfer: retried, then reported with the handler's words.
            report = ClientReport("torchdata's S3 handler", CONNECTION_BROKEN, str(error), error)
            raise translate_report(url, config.endpoint_url, report)
        process_stats().add(bytes_received=len(data))
        if len(data) != expected_size:
            raise ShortRead(f"{url}: torchdata's S3 handler returned {len(data)} of {expected_size} bytes")
        return data

    return io.BytesIO(call_with_retries(url, config.max_attempts, read_whole_object))
