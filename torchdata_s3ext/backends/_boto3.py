"""Backend ``boto3`` (and ``auto``): the object as consecutive ranged GETs, several in flight, each retried
and resumed from the byte it reached, checked against the object's size and pinned to its ETag."""
import dataclasses
from typing import Any, BinaryIO, List, Optional

from .._clients import process_client
from .._config import S3Config
from .._ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, RangedReader
from .._retry import ShortRead, backoff_sleep, call_with_retries, is_transient
from .._stats import count_botocore_requests
from .._url import S3Location, parse_s3_url
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url", "boto3_client"]


def boto3_client(config: S3Config, retries: bool = True) -> Any:
    """This process's boto3 S3 client for ``config``; ``retries=False`` leaves every retry to the caller."""
    if not retries:
        config = dataclasses.replace(config, max_attempts=1)

    def make_client() -> Any:
        import boto3

        session = boto3.session.Session(profile_name=config.profile) if config.profile else boto3.session.Session()
        client = session.client("s3", **config.boto3_client_kwargs())
        count_botocore_requests(client.meta.events)
        return client

    return process_client("boto3", config, make_client)


class _ObjectParts:
    """Fetches byte ranges of one object version, retrying and resuming on transient faults."""

    def __init__(self, url: str, location: S3Location, config: S3Config) -> None:
        self.url = url
        self.location = location
        self.config = config
        self.client = boto3_client(config, retries=False)
        self.etag: Optional[str] = None

    def get(self, start: int, end: Optional[int]) -> Any:
        """One GET of bytes ``start..end-1`` (``end=None``: one part from ``start``)."""
        kwargs = {"Bucket": self.location.bucket, "Key": self.location.key, "Range": f"bytes={start}-{'' if end is None else end - 1}"}
        if self.etag:
            kwargs["IfMatch"] = self.etag  # the object must not change between parts
        with botocore_errors_named(self.url, self.config):
            return self.client.get_object(**kwargs)

    def fetch(self, start: int, end: int, response: Any = None) -> bytes:
        """Bytes ``start..end-1``; a cut or short body is resumed from the byte it reached."""
        chunks: List[bytes] = []
        received = 0
        attempt = 1
        while received < end - start:
            try:
                if response is None:
                    response = self.get(start + received, end)
                body = response["Body"]
                # Ask for all that is missing at once: one copy out of the socket, instead of the many that
                # small reads and a growing buffer cost (half the CPU per part, measured).
                for chunk in iter(lambda: body.read(end - start - received), b""):
                    chunks.append(chunk)
                    received += len(chunk)
                response = None
                if received < end - start:
                    raise ShortRead(f"{self.url}: body ended at byte {start + received} of range {start}-{end - 1}")
            except Exception as error:
                response = None
                if not is_transient(error) or attempt >= self.config.max_attempts:
                    if is_transient(error):
                        raise OSError(f"{self.url}: gave up at byte {start + received} after {attempt} attempts: {error}") from error
                    raise
                backoff_sleep(attempt)
                attempt += 1
        if received > end - start:
            raise OSError(f"{self.url}: range {start}-{end - 1} returned {received} bytes")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)



def open_url(
    url: str, config: S3Config, part_size: int = DEFAULT_PART_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
    verify_etag: bool = True,
) -> BinaryIO:
    """Open ``url`` for streaming; ``part_size`` bytes per GET, ``concurrency`` GETs in flight; with
    ``verify_etag``, the content is checked against an ETag that is a plain MD5 before the last part is read."""
    parts = _ObjectParts(url, parse_s3_url(url), config)
    try:
        first = call_with_retries(url, config.max_attempts, lambda: parts.get(0, part_size))
    except OSError as error:
        if "InvalidRange" not in str(error):
            raise
        return RangedReader(url, 0, parts.fetch)  # type: ignore[return-value]  # an empty object
    content_range = first.get("ContentRange")
    if not content_range:
        raise OSError(f"{url}: the server ignored the Range header (no Content-Range in its answer)")
    size = int(content_range.rsplit("/", 1)[1])
    parts.etag = first.get("ETag")
    first_part = parts.fetch(0, min(part_size, size), response=first)
    content_md5 = _plain_md5(first) if verify_etag else None
    return RangedReader(  # type: ignore[return-value]
        url, size, parts.fetch, part_size, concurrency, first_part=first_part, content_md5=content_md5
    )


def _plain_md5(response: Any) -> Optional[str]:
    """The ETag as an MD5 hex digest when it is one: a single-part upload without SSE-KMS or SSE-C."""
    etag = (response.get("ETag") or "").strip('"')
    encrypted = response.get("ServerSideEncryption") == "aws:kms" or response.get("SSECustomerAlgorithm")
    if encrypted or len(etag) != 32 or any(c not in "0123456789abcdef" for c in etag.lower()):
        return None
    return etag.lower()
