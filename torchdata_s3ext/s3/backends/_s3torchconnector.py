"""Backend ``s3torchconnector``: AWS's CRT-based client, whose GET streams an object in parallel parts.

The object is streamed straight from the CRT's part stream, not through s3torchconnector's sequential
reader (which keeps every byte read so far in memory). Needs ``pip install torchdata-s3ext[s3torchconnector]``.

Three things the CRT's client lacks are added here:

- a read timeout: its ``next()`` and its HEAD block until the CRT's own timeouts give up (about a minute on a
  stalled body), so the parts are pulled on a thread of their own into a queue of one, a HEAD runs on a
  thread of its own, and the reader waits at most ``S3Config.read_timeout`` for each (see ``_crt_calls``; the CRT's messages are read in ``_crt_errors``);
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
import errno
import queue
from typing import Any, BinaryIO, Iterator, Optional

from ..._config import S3Config
from ...compat import crt_object_stream
from ..client.clients import crt_client
from ..client.credentials import credential_env, scoped_environ
from ..client.errors import Stalled, translate_client_error
from ..client.objects import head_not_found
from ..client.retry import call_with_retries, code_of
from ..io.ranges import check_range, clamp_range, empty_range
from ..io.streams import ChunkReader, ResumingReader, buffered
from ..stats import process_stats
from ..url import parse_s3_url
from ._crt_calls import PartQueue, call_within
from ._crt_errors import classify, translated

__all__ = ["open_url"]


class _CrtObject:
    """One object read through the CRT client: its HEADs, and its GETs from a byte on."""

    def __init__(self, url: str, config: S3Config, part_size: int) -> None:
        self.url, self.config, self.part_size = url, config, part_size
        self.location = parse_s3_url(url)
        self.client = crt_client(config, part_size)

    def head(self) -> Any:
        """One HeadObject, bounded by ``read_timeout``; its failure raised as ours."""

        def head_once() -> Any:
            # The native client reads credentials from the environment when it signs; give it ours.
            with scoped_environ(credential_env(self.config)):
                return self.client.head_object(self.location.bucket, self.location.key)

        try:
            head = call_within(self.url, self.config.read_timeout, head_once)
        except Stalled:
            raise
        except Exception as error:
            raise self._head_error(error)
        process_stats().add(heads=1)
        return head

    def _head_error(self, error: Exception) -> BaseException:
        failed = translated(self.url, self.config, error)
        if code_of(failed) != "404":
            return failed
        return head_not_found(self.url, failed, self._bucket_missing, "a LIST")

    def _bucket_missing(self) -> bool:
        """Whether a LIST of at most one key says the bucket is missing."""
        process_stats().add(lists=1)
        try:
            with scoped_environ(credential_env(self.config)):
                next(iter(self.client.list_objects(self.location.bucket, prefix=self.location.key, max_keys=1)), None)
        except Exception as error:
            return classify(str(error)).code == "NoSuchBucket"
        return False

    def parts(self, offset: int, end: Optional[int]) -> Iterator[bytes]:
        """The CRT's part stream of bytes ``offset .. end-1`` (``end=None``: to the object's end)."""
        location, env = self.location, credential_env(self.config)
        if not env:  # nothing to set: no need to hold the environment's lock while the first part is awaited
            return iter(crt_object_stream(self.client, location.bucket, location.key, offset, end))
        # (With credentials of S3Config's own, a stall before the first part holds that lock, and a resumed
        # GET waits for it: the timeout fires, the resume waits for the CRT's own.)
        with scoped_environ(env):
            return iter(crt_object_stream(self.client, location.bucket, location.key, offset, end))


class _PartReader:
    """``read_chunk(n)`` over one GET's parts, from a :class:`~._crt_calls.PartQueue`, each awaited at most
    ``read_timeout``; a resumed GET (``etag`` given) checks, at its first part, that the object is still the
    version it started with."""

    def __init__(self, crt: _CrtObject, parts: PartQueue, offset: int, etag: Optional[str]) -> None:
        self.crt, self.parts, self.offset, self.etag = crt, parts, offset, etag
        self._pending = memoryview(b"")

    def read_chunk(self, size_wanted: int) -> bytes:
        while not self._pending:
            part = self._next_part()
            if part is None:
                return b""
            if self.etag is not None:
                self._check_version()
            self._pending = memoryview(part)
        chunk, self._pending = self._pending[:size_wanted], self._pending[size_wanted:]
        return chunk.tobytes()

    def _next_part(self) -> Optional[bytes]:
        url, config = self.crt.url, self.crt.config
        try:
            return self.parts.next_part(config.read_timeout)
        except queue.Empty:
            raise Stalled(errno.ETIMEDOUT, f"no bytes for read_timeout={config.read_timeout:g} s", url) from None
        except Exception as error:
            raise translated(url, config, error)

    def _check_version(self) -> None:
        now = self.crt.head()
        if now.etag != self.etag:
            raise translate_client_error(self.crt.url, "PreconditionFailed",
                                         f"ETag {self.etag} at open, {now.etag} on resuming at byte {self.offset}")
        self.etag = None


def open_url(
    url: str, config: S3Config, part_size: int = 8 << 20, buffer_size: int = 1 << 20, *, start: int = 0,
    end: Optional[int] = None,
) -> BinaryIO:
    """Stream ``url`` from the CRT's part stream; a cut stream resumes with a GET from the byte reached.
    ``start``/``end``: the CRT's GET covers bytes ``start .. end-1`` only; forward-only, not seekable. An empty
    range makes only the HEAD."""
    check_range(url, start, end)
    crt = _CrtObject(url, config, part_size)
    head = call_with_retries(url, config.max_attempts, crt.head)
    start, end = clamp_range(start, end, head.size)
    if start == end:  # no byte to GET (a zero-byte object, or an empty range)
        return empty_range(url, start)  # type: ignore[return-value]
    # To the object's end: ask for all of it, so that a body longer than the HEAD said is seen, not cut.
    get_end = None if end == head.size else end

    def open_at(offset: int) -> ChunkReader:
        # The CRT splits one GET into ranged GETs of ``part_size``; counted as such, not seen one by one.
        process_stats().add(gets=max(1, -(-(end - offset) // part_size)))
        parts = PartQueue(lambda: crt.parts(offset, get_end), config.read_timeout)
        reader = _PartReader(crt, parts, offset, head.etag if offset > start else None)  # resumed: same version?
        return ChunkReader(url, reader.read_chunk, close=parts.close, expected_size=end - offset, start=offset)

    return buffered(ResumingReader(url, open_at, config.max_attempts, start=start), buffer_size)  # type: ignore[return-value]
