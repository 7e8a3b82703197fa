"""Parse the shard URLs that ``open_s3`` accepts: ``s3://bucket/key``, ``file://`` URLs and local paths."""
import os
from typing import NamedTuple
from urllib.parse import unquote, urlparse

__all__ = ["S3Location", "is_s3_url", "parse_s3_url", "local_path"]


class S3Location(NamedTuple):
    bucket: str
    key: str


def is_s3_url(url: str) -> bool:
    return isinstance(url, str) and url.startswith("s3://")


def parse_s3_url(url: str) -> S3Location:
    """Split ``s3://bucket/key`` into bucket and key; raise ``ValueError`` naming the URL otherwise."""
    if not isinstance(url, str):
        raise TypeError(f"expected a URL string, got {type(url).__name__}: {url!r}")
    if not is_s3_url(url):
        raise ValueError(f"not an S3 URL (expected s3://bucket/key): {url!r}")
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise ValueError(f"S3 URL needs both a bucket and a key (s3://bucket/key): {url!r}")
    return S3Location(bucket, key)


def local_path(url: str) -> str:
    """The file-system path of a local path or ``file://`` URL; ``ValueError`` for any other scheme."""
    if not isinstance(url, str):
        raise TypeError(f"expected a path or URL string, got {type(url).__name__}: {url!r}")
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    if "://" in url:
        raise ValueError(f"not a local path or file:// URL: {url!r}")
    return os.path.expanduser(url)
