"""Parse the shard URLs that ``open_s3`` accepts: ``s3://bucket/key``, ``file://`` URLs, local paths and
webdataset's ``pipe:COMMAND``."""
import os
from typing import NamedTuple
from urllib.parse import unquote, urlparse

__all__ = ["PIPE_PREFIX", "S3Location", "is_pipe_url", "is_s3_url", "local_path", "parse_s3_url", "pipe_command"]

#: how webdataset's URLs that name a shell command start
PIPE_PREFIX = "pipe:"


class S3Location(NamedTuple):
    bucket: str
    key: str


def is_s3_url(url: str) -> bool:
    return isinstance(url, str) and url.startswith("s3://")


def is_pipe_url(url: str) -> bool:
    return isinstance(url, str) and url.startswith(PIPE_PREFIX)


def pipe_command(url: str) -> str:
    """The command of a ``pipe:COMMAND`` URL, as written (webdataset's ``url[5:]``); ``ValueError`` otherwise.

    >>> pipe_command("pipe:aws s3 cp s3://bkt/shard-000000.tar -")
    'aws s3 cp s3://bkt/shard-000000.tar -'
    """
    if not is_pipe_url(url):
        raise ValueError(f"not a pipe: URL (expected pipe:COMMAND): {url!r}")
    command = url[len(PIPE_PREFIX):]
    if not command.strip():
        raise ValueError(f"a pipe: URL needs a command after 'pipe:': {url!r}")
    return command


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
