"""One object version per stream, for the botocore-based clients (boto3, s3fs, iopath): :class:`VersionPin`
and the botocore hooks that carry it to every GetObject."""
import contextlib
import contextvars
from typing import Any, Dict, Iterator, Optional

from .errors import WrongLength

__all__ = ["VersionPin", "check_get_answer", "pin_versions"]


class VersionPin:
    """One object version for one stream: every GET made inside :meth:`applied` carries ``IfMatch: etag``, so
    S3 answers 412 PreconditionFailed instead of another version's bytes once the object is overwritten; and
    every answer is checked against the object's ``size``, as :func:`check_get_answer` does.

    ``etag`` and ``size`` are given (a HEAD's), or learnt from the first answer to a GET inside
    :meth:`applied` (iopath's opening GET). The pin reaches the botocore hooks of :func:`boto3_client` and
    :func:`s3fs_filesystem` through a context variable, so it holds for the calls of this thread only (and
    for the asyncio tasks fsspec starts from it, which copy the caller's context): parts of one stream fetched
    on several threads each apply it.
    """

    def __init__(self, url: str, etag: Optional[str] = None, size: Optional[int] = None) -> None:
        self.url = url
        self.etag = etag
        self.size = size

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        token = _current_pin.set(self)
        try:
            yield
        finally:
            _current_pin.reset(token)


_current_pin: "contextvars.ContextVar[Optional[VersionPin]]" = contextvars.ContextVar("torchdata_s3ext_version_pin", default=None)


def _send_if_match(params: Dict[str, Any], **_: Any) -> None:
    pin = _current_pin.get()
    if pin is not None and pin.etag and "IfMatch" not in params:
        params["IfMatch"] = pin.etag


def check_get_answer(url: str, answer: Dict[str, Any], size: Optional[int]) -> int:
    """The object's size a GetObject's answer announces (its ``Content-Range``'s total, or its
    ``Content-Length`` when it has none); ``WrongLength`` naming ``url`` when its ``Content-Length`` is not its
    ``Content-Range``'s span, or the size is not ``size`` (where known: a HEAD's, or the first answer's)."""
    length = answer.get("ContentLength")
    content_range = answer.get("ContentRange")
    announced = length
    if content_range:
        span, _, total = content_range.split(" ", 1)[-1].partition("/")
        first, _, last = span.partition("-")
        announced = int(total)
        if length is not None and length != int(last) - int(first) + 1:
            raise WrongLength(f"{url}: the answer announced Content-Range {content_range!r} and Content-Length {length}")
    if size is not None and announced is not None and announced != size:
        raise WrongLength(f"{url}: a GET announced an object of {announced} bytes, not the {size} bytes known at open")
    return announced if announced is not None else -1


def _check_answer(parsed: Dict[str, Any], **_: Any) -> None:
    pin = _current_pin.get()
    if pin is None or "Error" in parsed:
        return
    if pin.etag is None and parsed.get("ETag"):
        pin.etag = parsed["ETag"]
    announced = check_get_answer(pin.url, parsed, pin.size)
    if pin.size is None and announced >= 0:
        pin.size = announced


def pin_versions(events: Any) -> None:
    """Let :class:`VersionPin` reach every GetObject of a botocore (or aiobotocore) client or session."""
    events.register("before-parameter-build.s3.GetObject", _send_if_match, unique_id="torchdata_s3ext.if_match")
    events.register("after-call.s3.GetObject", _check_answer, unique_id="torchdata_s3ext.learn_etag")

