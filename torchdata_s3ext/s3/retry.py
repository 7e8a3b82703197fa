"""Which failures are worth another attempt, and how long to wait before it (exponential backoff, full jitter)."""
import random
import time
from typing import Callable, Optional, TypeVar

from .errors import EndpointUnreachable
from .stats import process_stats

T = TypeVar("T")

__all__ = ["RETRYABLE_CODES", "is_retryable", "backoff_sleep", "ShortRead", "TransientError", "is_transient", "call_with_retries"]

#: S3 error codes that mean "try again later"
RETRYABLE_CODES = frozenset(
    {"SlowDown", "503", "500", "502", "504", "InternalError", "ServiceUnavailable", "RequestTimeout",
     "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeTooSkewed"}
)

BASE_DELAY = 0.1
MAX_DELAY = 5.0


class TransientError(OSError):
    """A failure another attempt may not meet (throttling, a cut connection), as a backend reports it."""


class ShortRead(TransientError):
    """A response body ended before the bytes it promised (a silently cut connection)."""


def is_retryable(error: Optional[BaseException]) -> bool:
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

    if error is None or isinstance(error, EndpointUnreachable):
        return False
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return str(info.get("Code")) in RETRYABLE_CODES or status in RETRYABLE_CODES
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return False  # a dead endpoint fails at once, naming the endpoint, rather than after a long backoff
    return isinstance(
        error,
        (TransientError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ConnectionClosedError,
         Urllib3Error, ConnectionError, TimeoutError),
    )


def backoff_sleep(attempt: int, base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY) -> None:
    """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(max_delay, base * 2**attempt)].

    Every retry of ours passes here, so this is where :func:`process_stats` counts it."""
    process_stats().add(retries=1)
    time.sleep(random.uniform(0, min(max_delay, base_delay * (2 ** attempt))))


def is_transient(error: BaseException) -> bool:
    """Retryable itself, or translated (with the URL) from a retryable error."""
    return is_retryable(error) or is_retryable(error.__cause__)


def call_with_retries(url: str, max_attempts: int, operation: Callable[[], T]) -> T:
    """``operation()``, attempted up to ``max_attempts`` times while it fails transiently."""
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= max_attempts:
                raise OSError(f"{url}: gave up after {attempt} attempts: {error}") from error
            backoff_sleep(attempt)
            attempt += 1
