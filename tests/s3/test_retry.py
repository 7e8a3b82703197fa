"""The one retry loop: transient failures are attempted again up to the limit, others raise at once."""
import pytest

from torchdata_s3ext.s3.client.errors import AttemptsSpent, Stalled, TransientError
from torchdata_s3ext.s3.client.retry import call_with_retries
from torchdata_s3ext.s3.stats import process_stats

URL = "s3://bucket/train/shard-000000.tar"


def failing(times, error):
    calls = []

    def operation():
        calls.append(len(calls))
        if len(calls) <= times:
            raise error
        return "done"

    return operation, calls


def test_transient_failures_are_attempted_again_and_counted_as_retries():
    operation, calls = failing(2, TransientError("cut"))
    retries_before = process_stats().retries
    assert call_with_retries(URL, 3, operation) == "done"
    assert len(calls) == 3 and process_stats().retries == retries_before + 2


def test_attempts_run_out_with_an_error_naming_url_byte_and_attempts():
    operation, calls = failing(5, TransientError("cut"))
    with pytest.raises(OSError, match=rf"{URL}: gave up at byte 42 after 2 attempts: cut") as error:
        call_with_retries(URL, 2, operation, position=lambda: 42)
    assert len(calls) == 2 and isinstance(error.value.__cause__, TransientError)


def test_a_failure_that_is_not_transient_is_raised_at_once_as_it_is():
    operation, calls = failing(1, FileNotFoundError("no such key"))
    with pytest.raises(FileNotFoundError, match="no such key"):
        call_with_retries(URL, 5, operation)
    assert len(calls) == 1


def test_a_loop_above_one_that_gave_up_does_not_attempt_it_again():
    inner, inner_calls = failing(10, TransientError("cut"))
    outer_calls = []

    def outer_operation():
        outer_calls.append(1)
        return call_with_retries(URL, 2, inner)

    with pytest.raises(AttemptsSpent, match="gave up after 2 attempts"):
        call_with_retries(URL, 3, outer_operation)
    assert len(outer_calls) == 1 and len(inner_calls) == 2


def test_attempts_spent_keep_the_kind_of_the_last_fault():
    operation, _ = failing(5, Stalled(110, "nothing received", URL))
    with pytest.raises(TimeoutError, match="gave up after 2 attempts"):
        call_with_retries(URL, 2, operation)
