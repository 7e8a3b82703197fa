"""Backend ``s3fileloader``: torchdata's native ``S3FileLoader`` (AWS C++ SDK).

It downloads each object whole into memory (``BytesIO``); memory therefore grows with the shard size. Our
settings reach it through the environment: the endpoint when its handler is made
(``clients.native_s3_handler``), the credentials around each read, since it looks them up per request. Since
the handler can end a download early on a timeout without raising, the bytes received are checked against the
object's size and a short read is retried, then reported.

The handler normalises the path of the URL it is given (measured against a local server: ``a//b`` reads
``a/b``, ``a/./b`` and ``a/../b`` read ``a/b`` and ``b``, a leading ``/`` is dropped, a final ``.`` or ``..``
reads nothing), so a key it would change is refused before any request (:func:`check_key`). ``%``, ``+``,
spaces, ``?``, ``#`` and other characters reach S3 as they are.
"""
import contextlib
import io
from typing import BinaryIO, Optional

from ..._config import S3Config
from ..clients import credential_env, native_s3_handler
from ..environ import scoped_environ
from ..errors import (
    CONNECTION_BROKEN,
    ClientReport,
    ShortRead,
    translate_report,
)
from ..objects import head_object
from ..retry import call_with_retries
from ..stats import process_stats
from ..streams import ByteRange, check_range, clamp_range, empty_range, is_empty, is_whole
from ..url import S3Location, parse_s3_url

__all__ = ["check_key", "open_url"]

ALTERNATIVES = "boto3, fsspec, iopath, awscli, s3torchconnector"


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


def open_url(
    url: str, config: S3Config, request_timeout_ms: int = -1, *, start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """The object, downloaded whole by torchdata's native handler. ``request_timeout_ms=-1`` leaves the
    native client its own timeout, as ``S3FileLoader`` does (passing ``S3Config.read_timeout`` there made
    downloads slower); a download that timeout cuts short fails the size check and is retried.

    ``start``/``end``: the handler has no ranged read, so the whole object is still downloaded (and counted),
    then bytes ``start .. end-1`` of it are the stream, uncopied, at the object's offsets and seekable within
    them; only an empty range (``start == end``) skips the download."""
    check_range(url, start, end)
    check_key(url)  # a key the native handler would rewrite is refused before any request
    expected_size = head_object(url, config).size
    if is_empty(start, end, expected_size) and not is_whole(start, end):
        return empty_range(url, start)  # type: ignore[return-value]
    handler = native_s3_handler(config, request_timeout_ms, ALTERNATIVES)
    settings = credential_env(config)

    def read_whole_object() -> bytes:
        process_stats().add(gets=1)  # as we see it: one read; the native client may split it in parts
        try:
            # It looks credentials up in the environment for each request: give it ours. scoped_environ holds
            # a process-wide lock for the whole download, so it is taken only when the config has any.
            with scoped_environ(settings) if settings else contextlib.nullcontext():
                data = handler.s3_read(url)
        except ValueError as error:  # how the native handler reports curl and S3 errors
            # Its messages carry no S3 error code; the HEAD above found the object, so a failing read is
            # taken as a broken transfer: retried, then reported with the handler's words.
            report = ClientReport("torchdata's S3 handler", CONNECTION_BROKEN, str(error), error)
            raise translate_report(url, config.endpoint_url, report)
        process_stats().add(bytes_received=len(data))
        if len(data) != expected_size:
            raise ShortRead(f"{url}: torchdata's S3 handler returned {len(data)} of {expected_size} bytes")
        return data

    whole = io.BytesIO(call_with_retries(url, config.max_attempts, read_whole_object))
    if is_whole(start, end):
        return whole
    return ByteRange(url, whole, *clamp_range(start, end, expected_size), seekable=True)  # type: ignore[return-value]
