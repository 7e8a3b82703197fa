"""The one retry loop: which failures are worth another attempt, how long to wait before it (exponential
backoff, full jitter), and what to say when the attempts run out. Every backend retries through
:func:`call_with_retries`."""
import random
import time
from typing import Callable, Optional, TypeVar

from .errors import RETRYABLE_CODES, ClientReport, EndpointUnreachable, TransientError
from .stats import process_stats

T = TypeVar("T")

__all__ = ["Attempts", "backoff_sleep", "call_with_retries", "is_retryable", "is_transient"]

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


class Attempts:
    """How many more attempts a failing operation gets: ``max_attempts`` per run of faults, as one request
    has. For a stream that keeps one of these across its reads (``min_progress`` given), a run of faults ends
    only once the stream has moved ``min_progress`` bytes past the byte where the run started, so a link that
    delivers a little and stalls again cannot renew its attempts with each resume; and ``max_retries`` bounds
    the retries over the stream's whole life, however far each one moved it."""

    def __init__(self, max_attempts: int, min_progress: Optional[int] = None, max_retries: Optional[int] = None) -> None:
        self.max_attempts = max_attempts
        self.min_progress = min_progress
        self.max_retries = max_retries
        self.retries = 0
        self._attempt = 1  # the attempt the current run of faults is at; 1 while there is none
        self._run_start = 0  # the byte the current run of faults started at

    def spent(self, position: int) -> Optional[str]:
        """At a transient failure at byte ``position``: ``None`` while another attempt is due, else what was
        spent, for the message ("gave up after ...")."""
        if self._attempt == 1:
            self._run_start = position
        if self.min_progress is None:
            return f"{self._attempt} attempts" if self._attempt >= self.max_attempts else None
        if self._attempt >= self.max_attempts:
            return (f"{self.retries} resumes ({self._attempt} attempts since byte {self._run_start} advanced less "
                    f"than {self.min_progress} bytes)")
        if self.max_retries is not None and self.retries >= self.max_retries:
            return f"{self.retries} resumes (the stream's {self.max_retries} resumes are spent)"
        return None

    def wait(self) -> None:
        """Back off before the next attempt, and count it."""
        backoff_sleep(self._attempt)
        self._attempt += 1
        self.retries += 1

    def succeeded(self, position: int) -> None:
        """The operation worked and the stream reached ``position``: a run of faults that got far enough ends."""
        if self._attempt > 1 and (self.min_progress is None or position - self._run_start >= self.min_progress):
            self._attempt = 1


def _builtin_kind(error: BaseException) -> type:
    """The builtin kind of ``error`` (``TimeoutError``, ``ConnectionError``, ...; else ``OSError``): the class
    of the error that ends a run of attempts, so that it is caught as its last fault would be."""
    return next((kind for kind in type(error).__mro__ if kind.__module__ == "builtins" and issubclass(kind, OSError)), OSError)


def call_with_retries(
    url: str,
    max_attempts: int,
    operation: Callable[[], T],
    *,
    position: Optional[Callable[[], int]] = None,
    attempts: Optional[Attempts] = None,
) -> T:
    """``operation()``, attempted again while it fails transiently, until ``max_attempts`` attempts (or the
    budget of ``attempts``, kept by a caller across calls) are spent.

    ``position`` tells the byte reached, for the message once the attempts run out ("gave up at byte N after
    K attempts", an error of the last fault's builtin kind: ``TimeoutError``, ``ConnectionError``, or
    ``OSError``). A failure that is not transient is raised as it is, at once. An operation that holds a
    connection or a process closes it when it fails, before the wait.
    """
    attempts = attempts if attempts is not None else Attempts(max_attempts)
    while True:
        try:
            result = operation()
        except Exception as error:
            if not is_transient(error):
                raise
            reached = position() if position is not None else None
            spent = attempts.spent(reached or 0)
            if spent is not None:
                where = f" at byte {reached}" if reached is not None else ""
                raise _builtin_kind(error)(f"{url}: gave up{where} after {spent}: {error}") from error
            attempts.wait()
            continue
        attempts.succeeded(position() if position is not None else 0)
        return result
