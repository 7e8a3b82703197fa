"""Which failures are worth another attempt, and how long to wait before it (exponential backoff, full jitter)."""
import random
import time

__all__ = ["RETRYABLE_CODES", "is_retryable", "backoff_sleep", "ShortRead"]

#: S3 error codes that mean "try again later"
RETRYABLE_CODES = frozenset(
    {"SlowDown", "503", "500", "502", "504", "InternalError", "ServiceUnavailable", "RequestTimeout",
     "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeTooSkewed"}
)

BASE_DELAY = 0.1
MAX_DELAY = 5.0


class ShortRead(OSError):
    """A response body ended before the bytes it promised (a silently cut connection)."""


def is_retryable(error: BaseException) -> bool:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return str(info.get("Code")) in RETRYABLE_CODES or status in RETRYABLE_CODES
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return False  # a dead endpoint fails at once, naming the endpoint, rather than after a long backoff
    return isinstance(
        error,
        (ShortRead, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ConnectionClosedError,
         Urllib3Error, ConnectionError, TimeoutError),
    )


def backoff_sleep(attempt: int, base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY) -> None:
    """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(max_delay, base * 2**attempt)]."""
    time.sleep(random.uniform(0, min(max_delay, base_delay * (2 ** attempt))))
