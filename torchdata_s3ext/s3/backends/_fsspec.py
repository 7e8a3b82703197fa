"""Backend ``fsspec``: s3fs as the client, the object read as ranged ``cat_file`` parts, several in flight,
each retried on a transient fault (see ``ranged.py`` for the memory bound) and pinned to the ETag the object
had at open (a part of another version fails with "the object changed while it was read").

s3fs reports failures its own way, which we read back into ours here: an S3 error answer becomes an
``OSError`` whose ``__cause__`` is botocore's ``ClientError`` (translated again through our table, so a 412
and a 503 mean what they mean everywhere); a stalled body is a bare ``FSTimeoutError`` ("[Errno None] :"), a
request nobody answers is botocore's ``ReadTimeoutError``, a cut body aiohttp's ``ClientPayloadError`` - what
s3fs itself would retry (``s3fs.core.S3_RETRYABLE_ERRORS``), each raised here as a
:class:`~torchdata_s3ext.s3.client.errors.TransientError` naming the URL, for our retry loop.
"""
import errno
from typing import Any, BinaryIO, Callable, Optional, TypeVar

from ..._config import S3Config
from ..client import botocore_errors
from ..client.clients import s3fs_filesystem
from ..client.errors import CONNECTION_BROKEN, STALLED, Classification, TransientError
from ..client.pins import VersionPin
from ..client.retry import call_with_retries
from ..io.ranged import RangedReader
from ..io.ranges import check_part_length, check_range
from ..io.link_sizing import sizing_for
from ..url import parse_s3_url

__all__ = ["open_url"]

T = TypeVar("T")


def classify(error: BaseException) -> Optional[Classification]:
    """s3fs's classifier: what s3fs itself would retry (``s3fs.core.S3_RETRYABLE_ERRORS``: a stall, a cut) is
    transient; an S3 answer s3fs turned into an ``OSError`` is read by botocore's classifier from the
    ``ClientError`` under it; ``None`` for anything else."""
    from s3fs.core import S3_RETRYABLE_ERRORS

    if isinstance(error, S3_RETRYABLE_ERRORS):
        timed_out = isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower()
        return Classification(STALLED if timed_out else CONNECTION_BROKEN, True)
    return botocore_errors.classify(_client_error_under(error))


def _client_error_under(error: BaseException) -> Any:
    """The botocore ``ClientError`` s3fs translated into ``error``, if it was one."""
    from botocore.exceptions import ClientError

    cause = error.__cause__
    return cause if isinstance(cause, ClientError) else None


def _named(url: str, config: S3Config, operation: Callable[[], T]) -> T:
    """``operation()`` (an s3fs call), its failures raised as ours, naming ``url``."""
    try:
        with botocore_errors.botocore_errors_translated(url, config):
            return operation()
    except Exception as error:
        verdict = classify(error)
        if verdict is None:
            raise _with_url(url, error) if isinstance(error, OSError) else error
        if verdict.code not in (STALLED, CONNECTION_BROKEN):
            client_error = _client_error_under(error)
            raise botocore_errors.translated(url, config, client_error, verdict) from client_error
        what = f"nothing received for read_timeout={config.read_timeout:g} s" if verdict.code == STALLED else "connection broken"
        raise TransientError(errno.ETIMEDOUT if verdict.code == STALLED else errno.ECONNRESET,
                             f"{what} ({type(error).__name__}: {error or 'no message'})", url) from error


def _with_url(url: str, error: OSError) -> OSError:
    """``error`` naming ``url``: s3fs names the path without the scheme. As the builtin kind of the error
    (FileNotFoundError, PermissionError, ...): a class of a library's own may not take errno, strerror and
    filename (botocore's ReadTimeoutError raised TypeError)."""
    if url in str(error):
        return error
    builtin = next(kind for kind in type(error).__mro__ if kind.__module__ == "builtins")
    named = builtin(error.errno, error.strerror or str(error) or type(error).__name__, url)
    named.__cause__ = error
    return named


def open_url(
    url: str, config: S3Config, part_size: Optional[int] = None, concurrency: Optional[int] = None,
    memory_budget: Optional[int] = None, *,
    start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """One HEAD (s3fs's ``info``: size and ETag), then ``cat_file`` parts of bytes ``start .. end-1`` (sized
    as ``boto3``'s: within ``memory_budget``, or fixed by ``part_size``/``concurrency``), at the
    object's offsets (see :class:`~torchdata_s3ext.s3.io.ranged.RangedReader`), each checked to announce and
    carry the bytes asked for of an object of that size (:class:`~torchdata_s3ext.s3.client.clients.VersionPin`)."""
    check_range(url, start, end)
    sizing = sizing_for(f"fsspec {config.endpoint_url or config.region}", part_size, concurrency, memory_budget)
    location = parse_s3_url(url)
    path = f"{location.bucket}/{location.key}"
    filesystem = s3fs_filesystem(config)
    info = call_with_retries(url, config.max_attempts, lambda: _named(url, config, lambda: filesystem.info(path)))
    pin = VersionPin(url, info.get("ETag") or None, info["size"])

    def fetch(start: int, end: int) -> bytes:
        def fetch_once() -> bytes:
            with pin.applied():
                return check_part_length(url, filesystem.cat_file(path, start=start, end=end), start, end)

        return call_with_retries(url, config.max_attempts, lambda: _named(url, config, fetch_once))

    return RangedReader(url, info["size"], fetch, start=start, end=end, sizing=sizing)  # type: ignore[return-value]
