"""Backend ``s3fileloader``: torchdata's native ``S3FileLoader`` (AWS C++ SDK).

It downloads each object whole into memory (``BytesIO``); memory therefore grows with the shard size. Our
settings reach it through the environment: the endpoint, ``read_timeout`` and one attempt per request when
its handler is made (``clients.native_s3_handler``), the credentials around each read, since it looks them up
per request. It holds the GIL for a whole download, so nothing of ours can time it out from beside it.

The handler cannot tell a complete download from a failed one: it sizes its result by its own HEAD, fills it
with ranged GETs, and a GET that fails, stalls or ends short leaves zeros in its place, without an error
(measured: a 24 MiB shard whose GETs each ended 100 bytes short read as 24 MiB, NUL-padded). So its result is
checked against our HEAD (through boto3): the size, and the object's full-object checksum (CRC32, SHA1,
SHA256) or else its MD5 ETag; a mismatch is retried (one more download), then reported naming the URL. An
object with neither (a multipart upload without a full-object checksum) cannot be checked: it is read
through the ``boto3`` backend instead, with an :class:`UncheckableObjectWarning`.

The handler normalises the path of the URL it is given (measured against a local server: ``a//b`` reads
``a/b``, ``a/./b`` and ``a/../b`` read ``a/b`` and ``b``, a leading ``/`` is dropped, a final ``.`` or ``..``
reads nothing), so a key it would change is refused before any request (:func:`check_key`). ``%``, ``+``,
spaces, ``?``, ``#`` and other characters reach S3 as they are.
"""
import contextlib
import io
import warnings
from typing import BinaryIO, Optional

from ..._config import S3Config
from ..client.clients import native_s3_handler
from ..client.credentials import credential_env, scoped_environ
from ..client.errors import CONNECTION_BROKEN, Classification, ClientReport, classification, translate_report
from ..client.objects import check_content, head_object, is_checkable
from ..client.retry import call_with_retries
from ..io.ranges import ByteRange, check_range, clamp_range, empty_range, is_empty, is_whole
from ..stats import process_stats
from ..url import S3Location, parse_s3_url
from . import _boto3

__all__ = ["UncheckableObjectWarning", "check_key", "classify", "open_url"]

ALTERNATIVES = "boto3, fsspec, iopath, awscli, s3torchconnector"


class UncheckableObjectWarning(UserWarning):
    """An object ``s3fileloader`` cannot check (no full-object checksum, no MD5 ETag) is read through boto3."""


def _normalised_part(key: str) -> Optional[str]:
    """What in ``key`` the native handler's path normalisation would change, or ``None``."""
    if key.startswith("/"):
        return "a leading '/'"
    if "//" in key:
        return "an empty segment ('//')"
    dot_segment = next((segment for segment in key.split("/") if segment in (".", "..")), None)
    if dot_segment is not None:
        return f"a {dot_segment!r} segment"
    return None


def check_key(url: str) -> S3Location:
    """``url``'s bucket and key; ``ValueError`` naming the URL, the reason and the backends that can read it
    for a key the native handler would turn into another.

    >>> check_key("s3://bucket/train/a b+%41.tar").key
    'train/a b+%41.tar'
    >>> check_key("s3://bucket/dot/../z.tar")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the s3fileloader backend cannot read 's3://bucket/dot/../z.tar': the key has a '..' segment, ...
    """
    location = parse_s3_url(url)
    reason = _normalised_part(location.key)
    if reason is not None:
        raise ValueError(
            f"the s3fileloader backend cannot read {url!r}: the key has {reason}, which torchdata's native S3 "
            f"handler normalises away (it would read another object or none); use another backend: {ALTERNATIVES}"
        )
    return location


def classify(error: ValueError) -> Classification:
    """The native handler's classifier. It reports curl's and S3's errors as a ``ValueError`` whose message
    carries no S3 error code; our HEAD found the object just before, so a failing read is a broken transfer:
    retried, then reported with the handler's words."""
    return classification(CONNECTION_BROKEN)


def open_url(
    url: str, config: S3Config, request_timeout_ms: Optional[int] = None, *, start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """The object, downloaded whole by torchdata's native handler and checked (see the module's docstring).
    ``request_timeout_ms``: how long the handler waits without a byte (``None``: ``S3Config.read_timeout``;
    -1: the AWS C++ SDK's own).

    ``start``/``end``: the handler has no ranged read, so the whole object is still downloaded (and counted),
    then bytes ``start .. end-1`` of it are the stream, uncopied, at the object's offsets and seekable within
    them; an empty range, or a zero-byte object, downloads nothing."""
    check_range(url, start, end)
    check_key(url)  # a key the native handler would rewrite is refused before any request
    head = head_object(url, config)
    if is_empty(start, end, head.size):
        return empty_range(url, start)  # type: ignore[return-value]
    if not is_checkable(head):
        warnings.warn(f"{url}: torchdata's S3 handler returns zeros for bytes it failed to receive, and this object "
                      f"has neither a full-object checksum nor an MD5 ETag to check them against: read through boto3",
                      UncheckableObjectWarning, stacklevel=2)
        return _boto3.open_url(url, config, start=start, end=end)
    timeout_ms = round(config.read_timeout * 1000) if request_timeout_ms is None else request_timeout_ms
    handler = native_s3_handler(config, timeout_ms, ALTERNATIVES)
    settings = credential_env(config)

    def read_whole_object() -> bytes:
        process_stats().add(gets=1)  # as we see it: one read; the native client may split it in parts
        try:
            # It looks credentials up in the environment for each request: give it ours. scoped_environ holds
            # a process-wide lock for the whole download, so it is taken only when the config has any.
            with scoped_environ(settings) if settings else contextlib.nullcontext():
                data = handler.s3_read(url)
        except ValueError as error:  # how the native handler reports curl and S3 errors (of its HEAD only)
            report = ClientReport("torchdata's S3 handler", classify(error).code, str(error), error)
            raise translate_report(url, config.endpoint_url, report)
        process_stats().add(bytes_received=len(data))
        check_content(url, data, head)
        return data

    whole = io.BytesIO(call_with_retries(url, config.max_attempts, read_whole_object))
    if is_whole(start, end):
        return whole
    return ByteRange(url, whole, *clamp_range(start, end, head.size), seekable=True)  # type: ignore[return-value]
