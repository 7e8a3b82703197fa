"""S3 error codes become Python's exceptions, naming the URL; text-only clients' reports are read into codes."""
import errno

import pytest

from torchdata_s3ext.s3.client.errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    RETRYABLE_CODES,
    ClientReport,
    EndpointUnreachable,
    TransientError,
    translate_client_error,
    translate_report,
    unreachable_endpoint,
)
from torchdata_s3ext.s3.client.retry import is_transient

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


# What the AWS CLI and the CRT print, as seen from them against a local server and through the fault proxy.
CLI_NO_SUCH_KEY = "An error occurred (NoSuchKey) when calling the GetObject operation: The specified key does not exist."
CLI_SLOW_DOWN = ("An error occurred (SlowDown) when calling the GetObject operation (reached max retries: 0): "
                 "Please reduce your request rate.")
CLI_CUT = ("An error occurred while reading from response stream: ('Connection broken: IncompleteRead(1000 bytes "
           "read, 2999000 more expected)', IncompleteRead(1000 bytes read, 2999000 more expected))")
CLI_STALL = 'Read timeout on endpoint URL: "None"'
CLI_DEAD = 'Could not connect to the endpoint URL: "http://127.0.0.1:9/bkt/shard-500-closed-Connection.tar"'


@pytest.mark.parametrize(
    "stderr, code",
    [
        (CLI_NO_SUCH_KEY, "NoSuchKey"),
        (CLI_SLOW_DOWN, "SlowDown"),
        ("\n" + CLI_NO_SUCH_KEY + "\n", "NoSuchKey"),
        (CLI_CUT, CONNECTION_BROKEN),
        (CLI_STALL, CONNECTION_BROKEN),
        (CLI_DEAD, ENDPOINT_UNREACHABLE),
        ("2999000 read, but total bytes expected is 3000000.", CONNECTION_BROKEN),
        ("usage: aws [options] <command> <subcommand> (500) Connection closed reset by peer SlowDown", None),
    ],
)
def test_aws_cli_output_is_read_into_codes_by_botocore_s_own_lines(stderr, code):
    from torchdata_s3ext.s3.backends._awscli import cli_report

    report = cli_report(stderr, 255)
    assert report.code == code and stderr.strip() in report.text and "status 255" in report.text


def test_a_key_full_of_error_words_does_not_make_a_dead_endpoint_retried():
    from torchdata_s3ext.s3.backends._awscli import cli_report

    error = translate_report(URL, "http://127.0.0.1:9", cli_report(CLI_DEAD, 255))
    assert isinstance(error, EndpointUnreachable) and not is_transient(error)


@pytest.mark.parametrize(
    "message, code",
    [
        ("Service error: The key does not exist", "NoSuchKey"),
        ("Service error: The bucket does not exist", "NoSuchBucket"),
        ("Service error: The object was not found", "404"),
        ("Client error: Forbidden: Access Denied", "AccessDenied"),
        ("Client error: Request throttled", "SlowDown"),
        ("Client error: Wrong region (expecting eu-west-1)", "PermanentRedirect"),
        ("Client error: Unknown response error: MetaRequestResult { response_status: 503, crt_error: ... }", "503"),
        ("Client error: Unknown CRT error: CRT error 1051: aws-c-io: AWS_IO_SOCKET_CLOSED, socket is closed.",
         CONNECTION_BROKEN),
        ("Client error: Unknown CRT error: CRT error 1047: aws-c-io: AWS_IO_SOCKET_CONNECTION_REFUSED, socket "
         "connection refused.", ENDPOINT_UNREACHABLE),
        ("Client error: Failed to construct request: closed Connection 500 timeout", None),
    ],
)
def test_crt_messages_are_read_into_codes_at_their_fixed_places(message, code):
    from torchdata_s3ext.s3.backends._crt_errors import crt_report

    assert crt_report(message).code == code


@pytest.mark.parametrize(
    "code, error_type, transient",
    [
        ("NoSuchKey", FileNotFoundError, False),
        ("AccessDenied", PermissionError, False),
        ("SlowDown", OSError, True),
        ("500", OSError, True),
        (CONNECTION_BROKEN, TransientError, True),
        (ENDPOINT_UNREACHABLE, EndpointUnreachable, False),
        (None, OSError, False),
    ],
)
def test_a_client_report_is_translated_by_the_one_table_and_kept_as_the_cause(code, error_type, transient):
    original = RuntimeError("the client's own exception")
    report = ClientReport("the AWS CLI", code, "what it printed", original)
    error = translate_report(URL, "http://127.0.0.1:9", report)
    assert type(error) is error_type and URL in str(error) and "what it printed" in str(error)
    assert error.__cause__ is report and report.__cause__ is original
    assert is_transient(error) is transient


def test_retryable_codes_come_from_the_translation_table():
    assert {"SlowDown", "503", "500", "InternalError", CONNECTION_BROKEN} <= RETRYABLE_CODES
    assert not {"NoSuchKey", "AccessDenied", "PermanentRedirect", ENDPOINT_UNREACHABLE} & RETRYABLE_CODES


def test_botocore_s_classifier_is_what_translation_and_retries_read():
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    from torchdata_s3ext import S3Config
    from torchdata_s3ext.s3.client.botocore_errors import botocore_errors_translated, classify

    slow_down = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    unknown_503 = ClientError({"Error": {"Code": "Odd"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    assert classify(slow_down) == ("SlowDown", True) and classify(unknown_503) == ("Odd", True)
    assert classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:9")) == (ENDPOINT_UNREACHABLE, False)
    assert classify(ReadTimeoutError(endpoint_url="http://127.0.0.1:9")).retryable
    assert classify(ValueError("not botocore's")) is None
    for error, kind, transient in [(slow_down, OSError, True), (EndpointConnectionError(endpoint_url="http://x"),
                                                                 EndpointUnreachable, False)]:
        with pytest.raises(kind) as raised, botocore_errors_translated(URL, S3Config()):
            raise error
        assert URL in str(raised.value) and is_transient(raised.value) is transient


@pytest.mark.parametrize(
    "module, text, code, retryable",
    [
        ("_awscli", CLI_SLOW_DOWN, "SlowDown", True),
        ("_awscli", CLI_NO_SUCH_KEY, "NoSuchKey", False),
        ("_awscli", CLI_DEAD, ENDPOINT_UNREACHABLE, False),
        ("_crt_errors", "Client error: Request throttled", "SlowDown", True),
        ("_crt_errors", "Service error: The key does not exist", "NoSuchKey", False),
    ],
)
def test_a_text_only_client_s_classifier_gives_the_code_and_whether_to_retry(module, text, code, retryable):
    import importlib

    classify = importlib.import_module(f"torchdata_s3ext.s3.backends.{module}").classify
    assert classify(text) == (code, retryable)


def test_a_translated_error_tells_its_code_through_its_cause():
    from botocore.exceptions import ClientError

    from torchdata_s3ext.s3.client.retry import code_of

    error = translate_client_error(URL, "InvalidRange")
    error.__cause__ = ClientError({"Error": {"Code": "InvalidRange"}, "ResponseMetadata": {"HTTPStatusCode": 416}}, "GetObject")
    assert code_of(error) == "InvalidRange"
    assert code_of(translate_report(URL, None, ClientReport("the AWS CLI", "NoSuchKey", "printed"))) == "NoSuchKey"
