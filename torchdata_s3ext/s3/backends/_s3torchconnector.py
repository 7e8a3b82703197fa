"""Backend ``s3torchconnector``: AWS's CRT-based client, whose GET streams an object in parallel parts.

The object is streamed straight from the CRT's part stream, not through s3torchconnector's sequential
reader (which keeps every byte read so far in memory). Needs ``pip install torchdata-s3ext[s3torchconnector]``.

Three things the CRT's client lacks are added here:

- a read timeout: its ``next()`` and its HEAD block until the CRT's own timeouts give up (about a minute on a
  stalled body), so the parts are pulled on a thread of their own into a queue of one, a HEAD runs on a
  thread of its own, and the reader waits at most ``S3Config.read_timeout`` for each (see ``_crt_calls``);
  a timeout is transient: the HEAD is tried again, the stream resumes at the byte reached. The CRT itself
  makes one attempt per request, so attempts do not multiply;
- a length check: a GET that reads to the object's end asks for everything from its first byte on, so a body
  longer than the HEAD said is seen (and reported) rather than cut at the HEAD's size; a zero-byte object
  makes no GET at all (the CRT would ask for ``bytes=0-0`` and meet 416);
- one version per stream: the CRT pins the parts of one GET to the first part's ETag (its ``If-Match``), but
  s3torchconnector cannot pass an ETag to a GET, so a stream resumed after a fault could continue with a newer
  object. After the first part of every resumed GET, a HEAD compares the ETag with the one at open; a change
  is reported ("the object changed while it was read"), never retried. (A change between that HEAD and
  the open, while no fault happened, is invisible to the CRT client and to us.)
"""
import collections
import errno
import queue
import re
import threading
from typing import Any, BinaryIO, Callable, Deque, Iterable, Iterator, Optional

from ..._config import S3Config
from ...compat import crt_object_stream
from ..client.clients import crt_client
from ..client.credentials import credential_env, scoped_environ
from ..client.errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    ClientReport,
    Stalled,
    translate_client_error,
    translate_report,
)
from ..client.retry import call_with_retries
from ..io.ranges import check_range, clamp_range, empty_range
from ..io.streams import ChunkReader, ResumingReader, buffered
from ..stats import process_stats
from ..url import S3Location, parse_s3_url
from ._crt_calls import call_within, close_at_exit, start_thread

__all__ = ["open_url", "crt_report"]

# The CRT client's messages are its error chain joined by ": ", starting "Service error: " for the errors S3
# itself answers (mountpoint-s3-client's GetObjectError / HeadObjectError) ...
_SERVICE_ERRORS = {
    "The key does not exist": "NoSuchKey",
    "The bucket does not exist": "NoSuchBucket",
    "The object was not found": "404",  # HeadObject cannot tell a missing bucket from a missing key: see _head_error
    "At least one of the preconditions specified did not hold": "PreconditionFailed",
}
# ... and "Client error: " for the rest (its S3RequestError), whose first words name the kind.
_CLIENT_ERRORS = (
    ("Forbidden", "AccessDenied"),
    ("No signing credentials available", "AccessDenied"),
    ("Request throttled", "SlowDown"),
    ("Wrong region", "PermanentRedirect"),
)
_RESPONSE_STATUS = re.compile(r"\bresponse_status: (\d{3})\b")
_CRT_ERROR_NAME = re.compile(r"\bCRT error \d+: [\w-]+: (AWS_[A-Z0-9_]+)\b")
#: CRT errors that mean nothing answers at the endpoint
_UNREACHABLE_CRT_ERRORS = frozenset({
    "AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_SOCKET_NO_ROUTE_TO_HOST", "AWS_IO_SOCKET_NETWORK_DOWN",
    "AWS_IO_DNS_INVALID_NAME", "AWS_IO_DNS_QUERY_FAILED", "AWS_IO_DNS_NO_ADDRESS_FOR_HOST",
})
#: CRT errors of a transfer cut or stalled mid-request
_BROKEN_CRT_ERRORS = frozenset({
    "AWS_IO_SOCKET_CLOSED", "AWS_IO_SOCKET_TIMEOUT", "AWS_IO_BROKEN_PIPE", "AWS_ERROR_HTTP_CONNECTION_CLOSED",
    "AWS_ERROR_HTTP_SERVER_CLOSED", "AWS_ERROR_HTTP_RESPONSE_FIRST_BYTE_TIMEOUT", "AWS_IO_SOCKET_CONNECT_ABORTED",
    "AWS_ERROR_S3_SLOW_DOWN", "AWS_ERROR_S3_INTERNAL_ERROR",
})


def crt_report(message: str, original: Optional[BaseException] = None) -> ClientReport:
    """The S3 error code (or our code for a broken transfer or an unreachable endpoint) of a CRT message,
    read from the client's fixed error texts at their fixed places, never from words a key could contain."""
    kind, _, rest = message.partition(": ")
    code = None
    if kind == "Service error":
        code = _SERVICE_ERRORS.get(rest.split(": ", 1)[0])
    elif kind == "Client error":
        code = next((code for start, code in _CLIENT_ERRORS if rest.startswith(start)), None)
        status = _RESPONSE_STATUS.search(rest) if rest.startswith("Unknown response error") else None
        crt_error = _CRT_ERROR_NAME.search(rest) if code is None and status is None else None
        if status is not None:
            code = status.group(1)
        elif crt_error is not None and crt_error.group(1) in _UNREACHABLE_CRT_ERRORS:
            code = ENDPOINT_UNREACHABLE
        elif crt_error is not None and crt_error.group(1) in _BROKEN_CRT_ERRORS:
            code = CONNECTION_BROKEN
    return ClientReport("s3torchconnector", code, message, original)


def _translated(url: str, config: S3Config, error: Exception) -> OSError:
    from s3torchconnector import S3Exception

    if not isinstance(error, S3Exception):
        unexpected = OSError(f"{url}: s3torchconnector failed: {error!r}")
        unexpected.__cause__ = error
        return unexpected
    return translate_report(url, config.endpoint_url, crt_report(str(error), error))


class _PartQueue:
    """The CRT's parts of one GET, pulled by a thread of their own, at most ``depth`` waiting for the reader:
    memory stays at ``depth`` parts plus the one the thread holds, and the reader can wait with a timeout.

    The GET itself is started on that thread too (``open_parts()``): the CRT's ``get_object`` returns only
    once the first part has arrived, so a stall there is a stall like any other. At exit, the queue is closed
    and its thread waited for up to ``exit_wait`` seconds (see ``_crt_calls``)."""

    def __init__(self, open_parts: Callable[[], Iterable[bytes]], exit_wait: float, depth: int = 1) -> None:
        self._changed = threading.Condition()
        self._waiting: Deque[bytes] = collections.deque()
        self._depth = depth
        self._ended = False
        self._error: Optional[BaseException] = None
        self._closed = False
        close_at_exit(self)
        start_thread(lambda: self._pull(open_parts), "s3-crt-parts", exit_wait)

    def _pull(self, open_parts: Callable[[], Iterable[bytes]]) -> None:
        try:
            for part in open_parts():
                with self._changed:
                    self._changed.wait_for(lambda: len(self._waiting) < self._depth or self._closed)
                    if self._closed:
                        return  # the reader gave up on this GET: drop the CRT's stream
                    self._waiting.append(part)
                    self._changed.notify_all()
        except Exception as error:  # the reader raises it, translated
            self._error = error
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def next_part(self, timeout: float) -> Optional[bytes]:
        """The next part, ``None`` once the GET ended; ``queue.Empty`` if none arrived within ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._waiting or self._ended, timeout):
                raise queue.Empty
            if self._waiting:
                part = self._waiting.popleft()
                self._changed.notify_all()
                return part
        if self._error is not None:
            raise self._error
        return None

    def close(self) -> None:
        """Stop pulling; a thread stuck in the CRT's ``next()`` leaves once it returns."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()


def _head_error(url: str, config: S3Config, client: Any, location: S3Location, error: Exception) -> OSError:
    """The error of a failed HeadObject. Its 404 has no body, so no code says whether the bucket or the key is
    missing; a LIST of at most one key in the bucket, made only then, says which."""
    translated = _translated(url, config, error)
    if not (isinstance(translated.__cause__, ClientReport) and translated.__cause__.code == "404"):
        return translated
    process_stats().add(lists=1)
    try:
        with scoped_environ(credential_env(config)):
            next(iter(client.list_objects(location.bucket, prefix=location.key, max_keys=1)), None)
    except Exception as list_error:
        listed = _translated(url, config, list_error)
        if isinstance(listed.__cause__, ClientReport) and listed.__cause__.code == "NoSuchBucket":
            return listed
    return translated  # the bucket is there (or cannot be listed): the key is what is missing


def _head(url: str, config: S3Config, client: Any, location: S3Location) -> Any:
    """One HeadObject through the CRT, bounded by ``read_timeout``; its failure raised as ours."""

    def head_once() -> Any:
        # The native client reads credentials from the environment when it signs; give it ours.
        with scoped_environ(credential_env(config)):
            return client.head_object(location.bucket, location.key)

    try:
        head = call_within(url, config.read_timeout, head_once)
    except Stalled:
        raise
    except Exception as error:
        raise _head_error(url, config, client, location, error)
    process_stats().add(heads=1)
    return head


def open_url(
    url: str, config: S3Config, part_size: int = 8 << 20, buffer_size: int = 1 << 20, *, start: int = 0,
    end: Optional[int] = None,
) -> BinaryIO:
    """Stream ``url`` from the CRT's part stream; a cut stream resumes with a GET from the byte reached.
    ``start``/``end``: the CRT's GET covers bytes ``start .. end-1`` only; forward-only, not seekable. An empty
    range makes only the HEAD."""
    check_range(url, start, end)
    location = parse_s3_url(url)
    client = crt_client(config, part_size)
    head = call_with_retries(url, config.max_attempts, lambda: _head(url, config, client, location))
    start, end = clamp_range(start, end, head.size)
    if start == end:  # no byte to GET (a zero-byte object, or an empty range)
        return empty_range(url, start)  # type: ignore[return-value]
    # To the object's end: ask for all of it, so that a body longer than the HEAD said is seen, not cut.
    get_end = None if end == head.size else end

    def open_at(offset: int) -> ChunkReader:
        # The CRT splits one GET into ranged GETs of ``part_size``; counted as such, not seen one by one.
        process_stats().add(gets=max(1, -(-(end - offset) // part_size)))

        def open_parts() -> Iterator[bytes]:
            env = credential_env(config)
            if not env:  # nothing to set: no need to hold the environment's lock while the first part is awaited
                return iter(crt_object_stream(client, location.bucket, location.key, offset, get_end))
            # (With credentials of S3Config's own, a stall before the first part holds that lock, and a
            # resumed GET waits for it: the timeout fires, the resume waits for the CRT's own.)
            with scoped_environ(env):
                return iter(crt_object_stream(client, location.bucket, location.key, offset, get_end))

        parts = _PartQueue(open_parts, config.read_timeout)
        pending = memoryview(b"")
        version_unchecked = offset > start  # a resumed GET: is it still the object we started?

        def read_chunk(size_wanted: int) -> bytes:
            nonlocal pending, version_unchecked
            while not pending:
                try:
                    part = parts.next_part(config.read_timeout)
                except queue.Empty:
                    raise Stalled(errno.ETIMEDOUT, f"no bytes for read_timeout={config.read_timeout:g} s", url) from None
                except Exception as error:
                    raise _translated(url, config, error)
                if part is None:
                    return b""
                if version_unchecked:
                    _check_version(offset)
                    version_unchecked = False
                pending = memoryview(part)
            chunk, pending = pending[:size_wanted], pending[size_wanted:]
            return chunk.tobytes()

        return ChunkReader(url, read_chunk, close=parts.close, expected_size=end - offset, start=offset)

    def _check_version(offset: int) -> None:
        now = _head(url, config, client, location)
        if now.etag != head.etag:
            raise translate_client_error(url, "PreconditionFailed", f"ETag {head.etag} at open, {now.etag} on resuming at byte {offset}")

    return buffered(ResumingReader(url, open_at, config.max_attempts, start=start), buffer_size)  # type: ignore[return-value]
