"""Backend ``fsspec``: an s3fs file, read in large sequential blocks."""
from typing import Any, BinaryIO

from .._clients import process_client
from .._config import S3Config
from .._url import parse_s3_url
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url", "s3fs_filesystem"]


def s3fs_filesystem(config: S3Config) -> Any:
    """This process's ``s3fs.S3FileSystem`` for ``config`` (never fsspec's shared instance cache)."""

    def make_filesystem() -> Any:
        import s3fs

        client_kwargs = {"region_name": config.region} if config.region else {}
        return s3fs.S3FileSystem(
            anon=config.anonymous,
            key=config.aws_access_key_id,
            secret=config.aws_secret_access_key,
            token=config.aws_session_token,
            profile=config.profile,
            endpoint_url=config.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": config.connect_timeout,
                "read_timeout": config.read_timeout,
                "retries": {"max_attempts": config.max_attempts, "mode": "standard"},
            },
            skip_instance_cache=True,
        )

    return process_client("s3fs", config, make_filesystem)


def open_url(url: str, config: S3Config, block_size: int = 8 << 20, **open_kwargs: Any) -> BinaryIO:
    location = parse_s3_url(url)
    filesystem = s3fs_filesystem(config)
    open_kwargs.setdefault("cache_type", "readahead")
    try:
        with botocore_errors_named(url, config):
            return filesystem.open(f"{location.bucket}/{location.key}", "rb", block_size=block_size, **open_kwargs)
    except OSError as error:
        if url in str(error):
            raise
        # s3fs names the path without the scheme; say which URL failed, keeping the error's type.
        raise type(error)(error.errno, f"{error.strerror or error}", url) from error
