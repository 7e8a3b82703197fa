"""Turn a store's errors into Python's: one table of S3 error codes, one translation, the URL in the message
and the client's own error as ``__cause__``.

Every backend ends here. botocore-based clients raise exceptions that carry the code
(:func:`botocore_errors_translated`); the AWS CLI and the CRT report failures as text only, so their backends
read the code out of that text by the exact forms those clients print and hand it over as a
:class:`ClientReport`, which becomes the ``__cause__`` (see :func:`translate_report`). Whether a failure is
worth another attempt is decided from the same table (``RETRYABLE_CODES``, used by :mod:`.retry`).
"""
import contextlib
import errno
from typing import Dict, Iterator, NamedTuple, Optional

from .._config import S3Config

__all__ = [
    "CONNECTION_BROKEN",
    "ClientReport",
    "ENDPOINT_UNREACHABLE",
    "EndpointUnreachable",
    "RETRYABLE_CODES",
    "ConnectionBroken",
    "ShortRead",
    "Stalled",
    "TransientError",
    "WrongLength",
    "botocore_errors_translated",
    "translate_client_error",
    "translate_report",
    "unreachable_endpoint",
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

#: the code a text-only client's report carries for a connection cut or timed out mid-request
CONNECTION_BROKEN = "ConnectionBroken"
#: the code a text-only client's report carries when nothing answers at the endpoint
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
    CONNECTION_BROKEN: _BROKEN,
}

#: codes that mean "try again later"
RETRYABLE_CODES = frozenset(code for code, meaning in _CODES.items() if meaning.retryable)


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
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


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


@contextlib.contextmanager
def botocore_errors_translated(url: str, config: S3Config) -> Iterator[None]:
    """Raise botocore's errors inside the block as Python's, naming ``url`` (the original as ``__cause__``): S3's
    answers by their code, a dead endpoint as :class:`EndpointUnreachable`, a request nobody answers in time or
    a body that stops as :class:`Stalled` (a ``TimeoutError``), a cut connection as :class:`ConnectionBroken`."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        NoCredentialsError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    from urllib3.exceptions import ProtocolError
    from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

    try:
        yield
    except ClientError as error:
        info = error.response.get("Error", {})
        code = str(info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        raise translate_client_error(url, code, info.get("Message")) from error
    except (EndpointConnectionError, ConnectTimeoutError) as error:
        raise unreachable_endpoint(url, config.endpoint_url, error) from error
    except (ReadTimeoutError, Urllib3ReadTimeout) as error:
        raise Stalled(errno.ETIMEDOUT, f"nothing received for read_timeout={config.read_timeout:g} s ({error})", url) from error
    except (ConnectionClosedError, IncompleteReadError, ResponseStreamingError, ProtocolError) as error:
        raise ConnectionBroken(errno.ECONNRESET, f"connection broken ({error})", url) from error
    except NoCredentialsError as error:
        raise PermissionError(f"no AWS credentials found for {url} (set a profile, the AWS_* variables, or anonymous=True)") from error
