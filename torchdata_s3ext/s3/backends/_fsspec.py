"""Backend ``fsspec``: s3fs as the client, the object read as ranged ``cat_file`` parts, several in flight,
each retried on a transient fault (see ``ranged.py`` for the memory bound)."""
from typing import Any, BinaryIO

from ..._config import S3Config
from ..clients import s3fs_filesystem
from ..errors import botocore_errors_translated
from ..ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, RangedReader
from ..retry import call_with_retries
from ..url import parse_s3_url

__all__ = ["open_url"]


def _named(url: str, config: S3Config, operation: Any) -> Any:
    try:
        with botocore_errors_translated(url, config):
            return operation()
    except OSError as error:
        if url in str(error):
            raise
        # s3fs names the path without the scheme; say which URL failed, keeping the error's type.
        raise type(error)(error.errno, f"{error.strerror or error}", url) from error


def open_url(url: str, config: S3Config, part_size: int = DEFAULT_PART_SIZE, concurrency: int = DEFAULT_CONCURRENCY) -> BinaryIO:
    location = parse_s3_url(url)
    path = f"{location.bucket}/{location.key}"
    filesystem = s3fs_filesystem(config)
    size = call_with_retries(url, config.max_attempts, lambda: _named(url, config, lambda: filesystem.info(path)["size"]))

    def fetch(start: int, end: int) -> bytes:
        return call_with_retries(url, config.max_attempts, lambda: _named(url, config, lambda: filesystem.cat_file(path, start=start, end=end)))

    return RangedReader(url, size, fetch, part_size, concurrency)  # type: ignore[return-value]
