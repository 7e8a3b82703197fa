"""Backend ``fsspec``: s3fs as the client, the object read as ranged ``cat_file`` parts, several in flight,
each retried on a transient fault (see ``_ranged.py`` for the memory bound)."""
from typing import Any, BinaryIO

from ..clients import process_client
from ..._config import S3Config
from ..ranged import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, RangedReader
from ..retry import call_with_retries
from ..stats import count_botocore_requests
from ..url import parse_s3_url
from ._botocore_errors import botocore_errors_named

__all__ = ["open_url", "s3fs_filesystem"]


def s3fs_filesystem(config: S3Config) -> Any:
    """This process's ``s3fs.S3FileSystem`` for ``config`` (never fsspec's shared instance cache)."""

    def make_filesystem() -> Any:
        import aiobotocore.session
        import s3fs

        # A session of our own, hooked before s3fs makes (or remakes) its client from it.
        session = aiobotocore.session.AioSession(profile=config.profile) if config.profile else aiobotocore.session.AioSession()
        count_botocore_requests(session)
        client_kwargs: dict = {"verify": config.verify_ssl}
        if config.region:
            client_kwargs["region_name"] = config.region
        return s3fs.S3FileSystem(
            anon=config.anonymous,
            key=config.aws_access_key_id,
            secret=config.aws_secret_access_key,
            token=config.aws_session_token,
            session=session,
            endpoint_url=config.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": config.connect_timeout,
                "read_timeout": config.read_timeout,
                "retries": {"total_max_attempts": 1},  # retries are ours, per part
            },
            skip_instance_cache=True,
        )

    return process_client("s3fs", config, make_filesystem)


def _named(url: str, config: S3Config, operation: Any) -> Any:
    try:
        with botocore_errors_named(url, config):
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
