"""Turn a store's errors into Python's, with the URL in the message and the original as ``__cause__``."""
import errno
from typing import Optional

__all__ = ["EndpointUnreachable", "translate_client_error", "unreachable_endpoint"]

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_BUSY = {"SlowDown", "503", "ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded"}


def translate_client_error(url: str, code: str, message: Optional[str] = None) -> OSError:
    """An ``OSError`` subclass for an S3 error code: missing -> FileNotFoundError, denied -> PermissionError."""
    detail = f"{code}: {message}" if message else code
    if code == "NoSuchBucket":
        return FileNotFoundError(errno.ENOENT, f"bucket does not exist ({detail})", url)
    if code in _NOT_FOUND:
        return FileNotFoundError(errno.ENOENT, f"no such key ({detail})", url)
    if code in _DENIED:
        return PermissionError(errno.EACCES, f"access denied ({detail})", url)
    if code in _BUSY:
        return OSError(errno.EBUSY, f"S3 is throttling or unavailable ({detail})", url)
    if code in {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}:
        return OSError(errno.EINVAL, f"wrong region for this bucket? ({detail})", url)
    return OSError(errno.EIO, f"S3 error ({detail})", url)


class EndpointUnreachable(ConnectionError):
    """Nothing answers at the endpoint: reported at once, never retried with backoff."""


def unreachable_endpoint(url: str, endpoint: Optional[str], reason: object) -> EndpointUnreachable:
    where = endpoint or "the AWS S3 endpoint"
    return EndpointUnreachable(errno.ECONNREFUSED, f"cannot reach {where}: {reason}", url)
