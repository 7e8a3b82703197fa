"""The one retry loop: which failures are worth another attempt (read from each client's classifier, see
:mod:`.errors`), how long to wait before it (exponential backoff, full jitter), and what to say when the
attempts run out. Every request of every backend, of the listing, the shard index and the writer is retried
here, through :func:`call_with_retries`, and nowhere else: each client's own retries are off beneath it."""
import random
import time
from typing import Callable, Optional, TypeVar

from ..stats import process_stats
from . import botocore_errors
from .errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    STALLED,
    AttemptsSpent,
    Classification,
    ClientReport,
    EndpointUnreachable,
    TransientError,
    attempts_spent,
)

T = TypeVar("T")

__all__ = ["Attempts", "backoff_sleep", "call_with_retries", "classify", "code_of", "is_retryable", "is_transient"]

BASE_DELAY = 0.1
MAX_DELAY = 5.0


def classify(error: Optional[BaseException]) -> Optional[Classification]:
    """What ``error`` is, by the classifier of the client that raised it: a text-only client's
    :class:`~.errors.ClientReport` carries its own; botocore's and urllib3's exceptions are read by
    :func:`.botocore_errors.classify`; ours say it by their class (a dead endpoint and spent attempts are final,
    a cut, a stall or a wrong length transient); a builtin ``ConnectionError`` or ``TimeoutError`` (a socket's,
    read beneath botocore) is a broken connection. ``None``: nothing we know."""
    if error is None or isinstance(error, AttemptsSpent):
        return None
    if isinstance(error, EndpointUnreachable):
        return Classification(ENDPOINT_UNREACHABLE, False)
    if isinstance(error, ClientReport):
        return error.classification
    if isinstance(error, TransientError):
        return Classification(STALLED if isinstance(error, TimeoutError) else CONNECTION_BROKEN, True)
    verdict = botocore_errors.classify(error)
    if verdict is None and isinstance(error, (ConnectionError, TimeoutError)):
        return Classification(CONNECTION_BROKEN, True)
    return verdict


def code_of(error: BaseException) -> Optional[str]:
    """The code of a translated error, by its cause's classifier (``None``: not a client's error we know)."""
    verdict = classify(error.__cause__)
    return verdict.code if verdict is not None else None


def is_retryable(error: Optional[BaseException]) -> bool:
    """Whether a client's own error (or one of ours) means "try again" (see :func:`classify`)."""
    verdict = classify(error)
    return verdict is not None and verdict.retryable


def is_transient(error: BaseException) -> bool:
    """Retryable itself, or translated (with the URL) from a retryable error; never once attempts are spent."""
    if isinstance(error, AttemptsSpent):
        return False
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
    K attempts", an :class:`~.errors.AttemptsSpent` of the last fault's builtin kind: ``TimeoutError``,
    ``ConnectionError``, or ``OSError``; final: a loop above this one does not attempt it again). A failure
    that is not transient is raised as it is, at once. An operation that holds a
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
                raise attempts_spent(error, f"{url}: gave up{where} after {spent}: {error}") from error
            attempts.wait()
            continue
        attempts.succeeded(position() if position is not None else 0)
        return result
