"""S3 error codes become Python's exceptions, naming the URL."""
import errno

import pytest

from torchdata_s3ext.s3.errors import EndpointUnreachable, translate_client_error, unreachable_endpoint
from torchdata_s3ext.s3.retry import TransientError, is_transient

URL = "s3://bucket/train/shard-000000.tar"


@pytest.mark.parametrize(
    "code, error_type, words",
    [
        ("NoSuchKey", FileNotFoundError, "no such key"),
        ("NoSuchBucket", FileNotFoundError, "bucket does not exist"),
        ("404", FileNotFoundError, "no such key"),
        ("AccessDenied", PermissionError, "access denied"),
        ("InvalidAccessKeyId", PermissionError, "access denied"),
        ("403", PermissionError, "access denied"),
        ("PermanentRedirect", OSError, "wrong region"),
        ("AuthorizationHeaderMalformed", OSError, "wrong region"),
        ("SlowDown", OSError, "throttling"),
        ("SomethingElse", OSError, "S3 error"),
    ],
)
def test_client_errors_become_python_errors_naming_the_url(code, error_type, words):
    error = translate_client_error(URL, code, "the message")
    assert type(error) is error_type
    assert URL in str(error) and words in str(error) and code in str(error)


def test_an_unreachable_endpoint_is_a_connection_error_that_is_not_retried():
    error = unreachable_endpoint(URL, "http://127.0.0.1:9", "connection refused")
    assert isinstance(error, ConnectionError) and isinstance(error, EndpointUnreachable)
    assert error.errno == errno.ECONNREFUSED and "http://127.0.0.1:9" in str(error) and URL in str(error)
    assert not is_transient(error)


def test_throttling_and_cut_bodies_are_transient():
    assert is_transient(TransientError("cut"))
    assert is_transient(ConnectionResetError())
    slow_down = translate_client_error(URL, "SlowDown")
    assert not is_transient(slow_down)  # only transient through its botocore cause
    from botocore.exceptions import ClientError

    cause = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    slow_down.__cause__ = cause
    assert is_transient(slow_down)
    denied = translate_client_error(URL, "AccessDenied")
    denied.__cause__ = ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")
    assert not is_transient(denied)
