"""Backend ``boto3`` (and ``auto``): the object as consecutive ranged GETs, several in flight, each retried
and resumed from the byte it reached, checked against the object's size and pinned to its ETag.

With ``start``/``end`` the GETs cover bytes ``start .. end-1`` only; the first one starts at ``start`` and
tells the object's size (a ``start`` at or past the end costs one HEAD instead, for the size)."""
import threading
import time
from typing import Any, BinaryIO, Optional, Tuple

from ..._config import S3Config
from ...compat import http_response_of
from ..client.botocore_errors import botocore_errors_translated
from ..client.clients import boto3_client
from ..client.errors import ShortRead, WrongLength
from ..client.objects import head_object, plain_md5
from ..client.retry import call_with_retries, code_of
from ..io.ranged import RangedReader
from ..io.ranges import check_range, is_whole
from ..io.link_sizing import PartSizing, sizing_for
from ..url import S3Location, parse_s3_url

__all__ = ["open_url"]


class _ObjectParts:
    """Fetches byte ranges of one object version, retrying and resuming on transient faults."""

    def __init__(self, url: str, location: S3Location, config: S3Config, sizing: PartSizing) -> None:
        self.url = url
        self.sizing = sizing  # told how long each answer took to come
        self.location = location
        self.config = config
        self.client = boto3_client(config, retries=False)
        self.etag: Optional[str] = None
        self.first_response: Any = None
        self.first_start = 0  # where the opening GET (first_response) starts
        self._first_lock = threading.Lock()

    def get(self, start: int, end: Optional[int]) -> Any:
        """One GET of bytes ``start..end-1`` (``end=None``: one part from ``start``)."""
        kwargs = {"Bucket": self.location.bucket, "Key": self.location.key, "Range": f"bytes={start}-{'' if end is None else end - 1}"}
        if self.etag:
            kwargs["IfMatch"] = self.etag  # the object must not change between parts
        began = time.monotonic()
        with botocore_errors_translated(self.url, self.config):
            response = self.client.get_object(**kwargs)
        self.sizing.first_byte(time.monotonic() - began)  # get_object returns once the answer's head is in
        try:
            _check_range_answer(self.url, response, start, end)
        except WrongLength:
            response["Body"].close()
            raise
        return response

    def fetch_into(self, start: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the bytes from ``start`` on; a cut or short body is resumed from the byte it reached."""
        size = len(buffer)
        received = 0
        response = self._take_first_response(size) if start == self.first_start else None

        def read_rest() -> None:
            nonlocal received, response
            try:
                if response is None:
                    response = self.get(start + received, start + size)
                received += _read_body_into(response["Body"], buffer[received:])
                if received < size:
                    raise ShortRead(f"{self.url}: body ended at byte {start + received} of range {start}-{start + size - 1}")
            except Exception:
                if response is not None:
                    response["Body"].close()
                raise
            finally:
                response = None

        call_with_retries(self.url, self.config.max_attempts, read_rest, position=lambda: start + received)

    def _take_first_response(self, size: int) -> Any:
        """The answer to the opening GET (``first_response``, ``part_size`` bytes from ``first_start``), once,
        for the first fetch of the first part: its body is read on the pool while the parts after it are
        already on their way."""
        with self._first_lock:  # one fetch only may take it (a seek back can ask for the first part again)
            response, self.first_response = self.first_response, None
        if response is not None and _range_length(response) != size:
            response["Body"].close()  # not the part asked for
            return None
        return response


def open_url(
    url: str, config: S3Config, part_size: Optional[int] = None, concurrency: Optional[int] = None,
    verify_etag: bool = False, memory_budget: Optional[int] = None, *, start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """Open ``url`` for streaming: ranged GETs, several in flight, sized to the link within ``memory_budget``
    bytes of parts (112 MiB by default; see :mod:`~torchdata_s3ext.s3.io.sizing`), or ``part_size`` bytes per
    GET and ``concurrency`` in flight, fixed, when either is given (16 MiB and 6 by default); with
    ``verify_etag``, the content is checked against an ETag that is a plain MD5 before the last part is read
    (a whole object only). ``start``/``end``: bytes ``start .. end-1`` only, at the object's offsets (see
    :class:`~torchdata_s3ext.s3.io.ranged.RangedReader`)."""
    check_range(url, start, end)
    sizing = sizing_for(f"boto3 {config.endpoint_url or config.region}", part_size, concurrency, memory_budget)
    parts = _ObjectParts(url, parse_s3_url(url), config, sizing)
    if end is not None and end == start:  # no byte to GET: a HEAD tells the object is there, and its size
        head = head_object(url, config)
        return RangedReader(url, head.size, fetch_into=parts.fetch_into, start=start, end=end)  # type: ignore[return-value]
    first_end = start + sizing.part_size if end is None else min(start + sizing.part_size, end)
    try:
        first = call_with_retries(url, config.max_attempts, lambda: parts.get(start, first_end))
    except OSError as error:
        if code_of(error) != "InvalidRange":
            raise
        # an empty object (as before: no more requests), or a start at or past the end (a HEAD for the size)
        size = head_object(url, config).size if start else 0
        return RangedReader(url, size, fetch_into=parts.fetch_into, start=start, end=end)  # type: ignore[return-value]
    content_range = first.get("ContentRange")
    if not content_range:
        raise OSError(f"{url}: the server ignored the Range header (no Content-Range in its answer)")
    size = _parse_content_range(content_range)[2]
    parts.etag = first.get("ETag")
    parts.first_start = start
    parts.first_response = first  # its body is read as the first part, on the pool, while the next are requested
    content_md5 = plain_md5(first) if verify_etag and is_whole(start, end, size) else None
    return RangedReader(  # type: ignore[return-value]
        url, size, content_md5=content_md5, fetch_into=parts.fetch_into, start=start, end=end, etag=parts.etag,
        sizing=sizing,
    )


def _check_range_answer(url: str, response: Any, start: int, end: Optional[int]) -> None:
    """``WrongLength`` unless the answer to a GET of bytes ``start..end-1`` announces exactly those bytes (or the
    object's bytes from ``start`` on, where it ends sooner): its ``Content-Range`` and ``Content-Length`` agree
    with each other and with the range asked for."""
    content_range = response.get("ContentRange")
    if not content_range:
        return  # the opening GET reports a server that ignores ranges itself
    first, last, total = _parse_content_range(content_range)
    wanted_last = (total if end is None else min(end, total)) - 1
    if first != start or last != wanted_last or response.get("ContentLength") != last - first + 1:
        raise WrongLength(f"{url}: asked for bytes {start}-{'' if end is None else end - 1}, the answer announced "
                          f"Content-Range {content_range!r} and Content-Length {response.get('ContentLength')}")


def _parse_content_range(content_range: str) -> Tuple[int, int, int]:
    """``(first, last, total)`` of ``Content-Range: bytes first-last/total``."""
    span, _, total = content_range.split(" ", 1)[1].partition("/")
    first, _, last = span.partition("-")
    return int(first), int(last), int(total)


def _range_length(response: Any) -> int:
    """The number of bytes a ranged GET's answer carries, from its ``Content-Range: bytes a-b/size``."""
    first, last, _ = _parse_content_range(response["ContentRange"])
    return last - first + 1


def _read_body_into(body: Any, view: memoryview) -> int:
    """Read ``body`` (botocore's ``StreamingBody``) into ``view`` until it is full or the body ends; the bytes read.

    Straight from the socket into ``view`` through the ``http.client`` response under urllib3's, then the
    connection back to the pool: ``body.read(n)`` would allocate, zero and copy ``n`` bytes twice more, which
    is most of a part's CPU. A body whose checksum botocore validates, or any other kind of body, is read the
    ordinary way.
    """
    from botocore.httpchecksum import StreamingChecksumBody

    responses = http_response_of(body)
    filled = 0
    validating = isinstance(body, StreamingChecksumBody)  # botocore checks a checksum S3 sent: let it read
    if validating or responses is None:
        for chunk in iter(lambda: body.read(len(view) - filled), b""):
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return filled
    urllib3_response, http_response = responses
    while filled < len(view):
        count = http_response.readinto(view[filled:])
        if not count:
            break
        filled += count
    if http_response.isclosed():
        urllib3_response.release_conn()  # the whole body was read: the connection can serve the next part
    return filled
