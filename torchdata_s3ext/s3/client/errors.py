"""What a store's errors mean: one table of S3 error codes (and our own codes for a cut, a stall, a dead
endpoint), the Python error each becomes, naming the URL, and whether another attempt may help.

Each client has one classifier, ``classify(error) -> Classification(code, retryable)``, that reads its own
errors into a code of this table: botocore's and urllib3's exceptions (:mod:`.botocore_errors`, also for s3fs
and iopath), the AWS CLI's stderr and the CRT's messages (in their backends, by the exact forms those clients
print), torchdata's native handler (its backend). The same classification is what the translation to Python
errors reads (:func:`translate_client_error`, :func:`translate_report`) and what the retry loop reads
(:func:`.retry.is_transient`): a text-only client's is kept as a :class:`ClientReport`, the translated
error's ``__cause__``; botocore's exceptions are classified again where they are the ``__cause__``.
"""
import errno
from typing import Dict, NamedTuple, Optional

__all__ = [
    "CONNECTION_BROKEN",
    "ENDPOINT_UNREACHABLE",
    "NO_CREDENTIALS",
    "RETRYABLE_CODES",
    "STALLED",
    "attempts_spent",
    "AttemptsSpent",
    "classification",
    "Classification",
    "ClientReport",
    "ConnectionBroken",
    "EndpointUnreachable",
    "ShortRead",
    "Stalled",
    "TransientError",
    "translate_client_error",
    "translate_report",
    "unreachable_endpoint",
    "WrongLength",
]


class TransientError(OSError):
    """A failure another attempt may not meet (throttling, a cut connection), as a backend reports it."""


class ShortRead(TransientError):
    """A response body ended before the bytes it promised (a silently cut connection)."""


class WrongLength(TransientError):
    """An answer whose length disagrees with what was asked or promised: a ``Content-Length`` other than the
    range's, a ``Content-Range`` other than the one asked for, a body past the object's size, or bytes whose
    checksum is not the object's."""


class Stalled(TransientError, TimeoutError):
    """Nothing arrived within the read timeout: no answer to a request, or a body that stopped."""


class ConnectionBroken(TransientError, ConnectionError):
    """A connection closed or reset mid-request."""


class EndpointUnreachable(ConnectionError):
    """Nothing answers at the endpoint: reported at once, never retried with backoff."""


class AttemptsSpent(OSError):
    """The attempts a failing operation had are spent: final, never attempted again by a loop above the one that
    gave up (so attempts never multiply)."""


class TimedOutAttempts(AttemptsSpent, TimeoutError):
    """Attempts spent, the last one on a stall."""


class BrokenAttempts(AttemptsSpent, ConnectionError):
    """Attempts spent, the last one on a cut connection."""


def attempts_spent(last: BaseException, message: str) -> AttemptsSpent:
    """The error that ends a run of attempts whose last fault was ``last``: of its builtin kind
    (``TimeoutError``, ``ConnectionError``, else ``OSError``), so that it is caught as that fault would be."""
    if isinstance(last, TimeoutError):
        return TimedOutAttempts(message)
    if isinstance(last, ConnectionError):
        return BrokenAttempts(message)
    return AttemptsSpent(message)


class Classification(NamedTuple):
    """What a client's error is (an S3 error code, an HTTP status, or one of our codes) and whether another
    attempt may help."""

    code: Optional[str]
    retryable: bool


class _Meaning(NamedTuple):
    error_type: type
    errno: int
    words: str
    retryable: bool = False


_MISSING = _Meaning(FileNotFoundError, errno.ENOENT, "no such key")
_NO_BUCKET = _Meaning(FileNotFoundError, errno.ENOENT, "bucket does not exist")
_DENIED = _Meaning(PermissionError, errno.EACCES, "access denied")
_BUSY = _Meaning(OSError, errno.EBUSY, "S3 is throttling or unavailable", retryable=True)
_SERVER = _Meaning(OSError, errno.EIO, "S3 error", retryable=True)
_REGION = _Meaning(OSError, errno.EINVAL, "wrong region for this bucket?")
_CHANGED = _Meaning(OSError, errno.EIO, "the object changed while it was read")
_PAST_END = _Meaning(OSError, errno.EIO, "the object ends before the bytes asked for")
_BROKEN = _Meaning(TransientError, errno.ECONNRESET, "connection broken", retryable=True)
_OTHER = _Meaning(OSError, errno.EIO, "S3 error")

#: the code of a connection cut or timed out mid-request
CONNECTION_BROKEN = "ConnectionBroken"
#: the code of a request nobody answered, or a body that stopped, within ``read_timeout``
STALLED = "Stalled"
#: the code of a request that found no credentials to sign with
NO_CREDENTIALS = "NoCredentials"
#: the code of an endpoint where nothing answers
ENDPOINT_UNREACHABLE = "EndpointUnreachable"

#: every code we act on (S3's codes, HTTP statuses, and the two above), by what it means
_CODES: Dict[str, _Meaning] = {
    "NoSuchKey": _MISSING, "404": _MISSING, "NotFound": _MISSING,
    "NoSuchBucket": _NO_BUCKET,
    "AccessDenied": _DENIED, "403": _DENIED, "Forbidden": _DENIED, "InvalidAccessKeyId": _DENIED,
    "SignatureDoesNotMatch": _DENIED, "AllAccessDisabled": _DENIED,
    "SlowDown": _BUSY, "503": _BUSY, "ServiceUnavailable": _BUSY, "Throttling": _BUSY,
    "ThrottlingException": _BUSY, "RequestLimitExceeded": _BUSY,
    "500": _SERVER, "502": _SERVER, "504": _SERVER, "InternalError": _SERVER, "RequestTimeout": _SERVER,
    "RequestTimeTooSkewed": _SERVER,
    "PermanentRedirect": _REGION, "AuthorizationHeaderMalformed": _REGION, "IllegalLocationConstraintException": _REGION,
    "PreconditionFailed": _CHANGED, "412": _CHANGED,
    "InvalidRange": _PAST_END, "416": _PAST_END,
    CONNECTION_BROKEN: _BROKEN, STALLED: _BROKEN,
}

#: codes that mean "try again later"
RETRYABLE_CODES = frozenset(code for code, meaning in _CODES.items() if meaning.retryable)


def classification(code: Optional[str], status: object = None) -> Classification:
    """The classification of ``code`` (or of the HTTP ``status`` it came with, for a code we do not know)."""
    return Classification(code, code in RETRYABLE_CODES or str(status) in RETRYABLE_CODES)


def translate_client_error(url: str, code: str, message: Optional[str] = None) -> OSError:
    """An ``OSError`` subclass for an S3 error code: missing -> FileNotFoundError, denied -> PermissionError.

    The caller raises it ``from`` the client's error, which says whether another attempt may help."""
    meaning = _CODES.get(code, _OTHER)
    detail = f"{code}: {message}" if message else code
    return meaning.error_type(meaning.errno, f"{meaning.words} ({detail})", url)


def unreachable_endpoint(url: str, endpoint: Optional[str], reason: object) -> EndpointUnreachable:
    where = endpoint or "the AWS S3 endpoint"
    return EndpointUnreachable(errno.ECONNREFUSED, f"cannot reach {where}: {reason}", url)


class ClientReport(Exception):
    """What a text-only client reported (the AWS CLI's stderr, a CRT message), with the code read from it;
    the ``__cause__`` of the error :func:`translate_report` makes."""

    def __init__(self, client: str, code: Optional[str], text: str, original: Optional[BaseException] = None) -> None:
        super().__init__(f"{client}: {text}")
        self.client = client
        self.code = code
        self.text = text
        self.__cause__ = original  # the client's exception, where it raised one

    @property
    def classification(self) -> Classification:
        return classification(self.code)

    @property
    def retryable(self) -> bool:
        return self.classification.retryable


def translate_report(url: str, endpoint: Optional[str], report: ClientReport) -> OSError:
    """The Python error for a text-only client's report, with the report as its ``__cause__`` (raise it as it
    is: ``raise ... from`` would replace that cause, which tells the retry loop whether to try again)."""
    if report.code == ENDPOINT_UNREACHABLE:
        error: OSError = unreachable_endpoint(url, endpoint, report.text)
    elif report.code is None:
        error = OSError(errno.EIO, f"{report.client} failed: {report.text}", url)
    else:
        error = translate_client_error(url, report.code, report.text)
    error.__cause__ = report
    return error
