"""botocore's exceptions, translated to Python's with the URL named (shared by the botocore-based backends)."""
import contextlib
from typing import Iterator

from ..._config import S3Config
from ..errors import translate_client_error, unreachable_endpoint


@contextlib.contextmanager
def botocore_errors_named(url: str, config: S3Config) -> Iterator[None]:
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError

    try:
        yield
    except ClientError as error:
        info = error.response.get("Error", {})
        code = str(info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        raise translate_client_error(url, code, info.get("Message")) from error
    except (EndpointConnectionError, ConnectTimeoutError) as error:
        raise unreachable_endpoint(url, config.endpoint_url, error) from error
    except NoCredentialsError as error:
        raise PermissionError(f"no AWS credentials found for {url} (set a profile, the AWS_* variables, or anonymous=True)") from error
