"""The one retry loop: which failures are worth another attempt, how long to wait before it (exponential
backoff, full jitter), and what to say when the attempts run out. Every backend retries through
:func:`call_with_retries`."""
import random
import time
from typing import Callable, Optional, TypeVar

from .errors import RETRYABLE_CODES, ClientReport, EndpointUnreachable, TransientError
from .stats import process_stats

T = TypeVar("T")

__all__ = ["backoff_sleep", "call_with_retries", "is_retryable", "is_transient"]

BASE_DELAY = 0.1
MAX_DELAY = 5.0


def is_retryable(error: Optional[BaseException]) -> bool:
    """Whether a client's own error (or one of ours) means "try again": throttling, a 5xx, a cut or stalled
    connection. A dead endpoint is not: it fails at once, naming the endpoint, rather than after a long backoff."""
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
    if isinstance(error, ClientReport):
        return error.retryable
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return str(info.get("Code")) in RETRYABLE_CODES or status in RETRYABLE_CODES
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return False
    return isinstance(
        error,
        (TransientError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ConnectionClosedError,
         Urllib3Error, ConnectionError, TimeoutError),
    )


def is_transient(error: BaseException) -> bool:
    """Retryable itself, or translated (with the URL) from a retryable error."""
    return is_retryable(error) or is_retryable(error.__cause__)


def backoff_sleep(attempt: int, base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY) -> None:
    """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(max_delay, base * 2**attempt)].

    Every retry of ours passes here, so this is where :func:`process_stats` counts it."""
    process_stats().add(retries=1)
    time.sleep(random.uniform(0, min(max_delay, base_delay * (2 ** attempt))))


def call_with_retries(
    url: str,
    max_attempts: int,
    operation: Callable[[], T],
    *,
    before_retry: Optional[Callable[[], None]] = None,
    position: Optional[Callable[[], int]] = None,
) -> T:
    """``operation()``, attempted up to ``max_attempts`` times while it fails transiently.

    ``before_retry`` runs after each backoff (e.g. to reopen a stream at the byte it reached); ``position``
    tells the byte reached, for the message once the attempts run out ("gave up at byte N after K attempts").
    A failure that is not transient is raised as it is, at once.
    """
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= max_attempts:
                where = f" at byte {position()}" if position is not None else ""
                raise OSError(f"{url}: gave up{where} after {attempt} attempts: {error}") from error
            backoff_sleep(attempt)
            attempt += 1
            if before_retry is not None:
                before_retry()
