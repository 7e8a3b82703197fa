"""botocore's classifier: what an exception of botocore or urllib3 is (boto3, s3fs and iopath raise them), read
once by :func:`classify` and used both to translate it (:func:`botocore_errors_translated`) and to decide
whether another attempt may help (:func:`.retry.is_transient`)."""
import contextlib
import errno
from typing import Iterator, Optional

from ..._config import S3Config
from .errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    NO_CREDENTIALS,
    STALLED,
    Classification,
    ConnectionBroken,
    Stalled,
    classification,
    translate_client_error,
    unreachable_endpoint,
)

__all__ = ["botocore_errors_translated", "classify", "translated"]


def classify(error: Optional[BaseException]) -> Optional[Classification]:
    """The code of a botocore or urllib3 exception and whether another attempt may help: S3's answers by their
    code (or HTTP status); a dead endpoint is not retried (it fails at once, naming the endpoint, rather than
    after a long backoff); a stall or a cut connection is. ``None`` for any other exception."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        NoCredentialsError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return classification(str(error.response.get("Error", {}).get("Code") or status), status)
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return Classification(ENDPOINT_UNREACHABLE, False)
    if isinstance(error, (ReadTimeoutError, Urllib3ReadTimeout)):
        return Classification(STALLED, True)
    if isinstance(error, (ConnectionClosedError, IncompleteReadError, ResponseStreamingError, Urllib3Error)):
        return Classification(CONNECTION_BROKEN, True)
    if isinstance(error, NoCredentialsError):
        return Classification(NO_CREDENTIALS, False)
    return None


def translated(url: str, config: S3Config, error: Exception, verdict: Classification) -> Exception:
    """The Python error for botocore's ``error``, classified as ``verdict``, naming ``url``."""
    if verdict.code == ENDPOINT_UNREACHABLE:
        return unreachable_endpoint(url, config.endpoint_url, error)
    if verdict.code == STALLED:
        return Stalled(errno.ETIMEDOUT, f"nothing received for read_timeout={config.read_timeout:g} s ({error})", url)
    if verdict.code == CONNECTION_BROKEN:
        return ConnectionBroken(errno.ECONNRESET, f"connection broken ({error})", url)
    if verdict.code == NO_CREDENTIALS:
        return PermissionError(f"no AWS credentials found for {url} (set a profile, the AWS_* variables, or anonymous=True)")
    return translate_client_error(url, verdict.code or "", getattr(error, "response", {}).get("Error", {}).get("Message"))


@contextlib.contextmanager
def botocore_errors_translated(url: str, config: S3Config) -> Iterator[None]:
    """Raise botocore's errors inside the block as Python's, naming ``url`` (the original as ``__cause__``): S3's
    answers by their code, a dead endpoint as :class:`~.errors.EndpointUnreachable`, a request nobody answers
    in time or a body that stops as :class:`~.errors.Stalled` (a ``TimeoutError``), a cut connection as
    :class:`~.errors.ConnectionBroken`; any other exception passes as it is."""
    try:
        yield
    except Exception as error:
        verdict = classify(error)
        if verdict is None:
            raise
        raise translated(url, config, error, verdict) from error
