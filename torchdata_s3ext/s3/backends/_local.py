"""Backend ``local``: a local path or ``file://`` URL, e.g. a bucket mounted by SageMaker Fast File Mode."""
import io
from typing import Any, BinaryIO

from ..._config import S3Config
from ..url import local_path

__all__ = ["open_url"]


def open_url(url: str, config: S3Config, buffer_size: int = io.DEFAULT_BUFFER_SIZE, **open_kwargs: Any) -> BinaryIO:
    """The file, opened as ``open()`` does: seekable, so ``load_from_tar()`` reads each member in one read and
    a small buffer is best (a large one is refilled, whole, at every member header)."""
    path = local_path(url)
    try:
        return open(path, "rb", buffering=buffer_size, **open_kwargs)
    except FileNotFoundError as error:
        raise FileNotFoundError(error.errno, f"no such file ({error.strerror})", url) from error
    except PermissionError as error:
        raise PermissionError(error.errno, f"permission denied ({error.strerror})", url) from error
