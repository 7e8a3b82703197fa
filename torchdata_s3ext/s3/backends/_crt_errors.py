"""The CRT's classifier (s3torchconnector's client): what its messages say, read into a code of our table
(:mod:`~torchdata_s3ext.s3.client.errors`) from the client's fixed error texts at their fixed places, never
from words a key could contain. The translation to Python errors and the retry loop both read it."""
import re
from typing import Optional

from ..._config import S3Config
from ..client.errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    Classification,
    ClientReport,
    classification,
    translate_report,
)

__all__ = ["classify", "crt_report", "translated"]

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


def classify(message: str) -> Classification:
    """The S3 error code (or our code for a broken transfer or an unreachable endpoint) of a CRT message, and
    whether another attempt may help; code ``None`` for a message of no form we know (not retried)."""
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
    return classification(code)


def crt_report(message: str, original: Optional[BaseException] = None) -> ClientReport:
    """A CRT message as a :class:`~torchdata_s3ext.s3.client.errors.ClientReport`, with its code."""
    return ClientReport("s3torchconnector", classify(message).code, message, original)


def translated(url: str, config: S3Config, error: Exception) -> OSError:
    """The Python error for what s3torchconnector raised, naming ``url``."""
    from s3torchconnector import S3Exception

    if not isinstance(error, S3Exception):
        unexpected = OSError(f"{url}: s3torchconnector failed: {error!r}")
        unexpected.__cause__ = error
        return unexpected
    return translate_report(url, config.endpoint_url, crt_report(str(error), error))
