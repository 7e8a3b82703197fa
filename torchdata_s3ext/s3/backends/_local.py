"""Backend ``local``: a local path or ``file://`` URL, e.g. a bucket mounted by SageMaker Fast File Mode."""
import io
import os
from typing import Any, BinaryIO, Optional

from ..._config import S3Config
from ..io.ranges import ByteRange, check_range, clamp_range
from ..url import local_path

__all__ = ["open_url"]


def open_url(
    url: str, config: S3Config, buffer_size: int = io.DEFAULT_BUFFER_SIZE, *, start: int = 0, end: Optional[int] = None,
    **open_kwargs: Any,
) -> BinaryIO:
    """The file, opened as ``open()`` does: seekable, so ``load_from_tar()`` reads each member in one read and
    a small buffer is best (a large one is refilled, whole, at every member header).

    ``start``/``end``: bytes ``start .. end-1`` of the file, at the file's offsets (``tell()`` is ``start`` at
    first, seekable within ``start .. end``); the whole file (the default) is the plain file object."""
    check_range(url, start, end)
    path = local_path(url)
    try:
        file = open(path, "rb", buffering=buffer_size, **open_kwargs)
    except FileNotFoundError as error:
        raise FileNotFoundError(error.errno, f"no such file ({error.strerror})", url) from error
    except PermissionError as error:
        raise PermissionError(error.errno, f"permission denied ({error.strerror})", url) from error
    if start == 0 and end is None:
        return file
    start, end = clamp_range(start, end, os.fstat(file.fileno()).st_size)
    return ByteRange(url, file, start, end, seekable=True)  # type: ignore[return-value]
