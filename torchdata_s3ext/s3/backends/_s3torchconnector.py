"""Backend ``s3torchconnector``: AWS's CRT-based client, whose GET streams an object in parallel parts.

The object is streamed straight from the CRT's part stream, not through s3torchconnector's sequential
reader (which keeps every byte read so far in memory). Needs ``pip install torchdata-s3ext[s3torchconnector]``.
"""
import re
from typing import BinaryIO, Iterator, Optional

from ..._config import S3Config
from ..clients import credential_env, crt_client
from ..compat import crt_object_stream
from ..environ import scoped_environ
from ..errors import CONNECTION_BROKEN, ENDPOINT_UNREACHABLE, ClientReport, translate_report
from ..stats import process_stats
from ..streams import ChunkReader, ResumingReader, buffered
from ..url import parse_s3_url

__all__ = ["open_url", "crt_report"]

# The CRT client's messages are its error chain joined by ": ", starting "Service error: " for the errors S3
# itself answers (mountpoint-s3-client's GetObjectError / HeadObjectError) ...
_SERVICE_ERRORS = {
    "The key does not exist": "NoSuchKey",
    "The bucket does not exist": "NoSuchBucket",
    "The object was not found": "404",  # HeadObject cannot tell a missing bucket from a missing key
    "At least one of the preconditions specified did not hold": "PreconditionFailed",
}
# ... and "Client error: " for the rest (its S3RequestError), whose first words name the kind.
_CLIENT_ERRORS = (
    ("Forbidden", "AccessDenied"),
    ("No signing credentials available", "AccessDenied"),
    ("Request throttled", "SlowDown"),
    ("Wrong region", "PermanentRedirect"),
)
_RESPONSE_STATUS = re.compile(r"\bresponse_status: (\d{3})\b")
_CRT_ERROR_NAME = re.compile(r"\bCRT error \d+: [\w-]+: (AWS_[A-Z0-9_]+)\b")
#: CRT errors that mean nothing answers at the endpoint
_UNREACHABLE_CRT_ERRORS = frozenset({
    "AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_SOCKET_NO_ROUTE_TO_HOST", "AWS_IO_SOCKET_NETWORK_DOWN",
    "AWS_IO_DNS_INVALID_NAME", "AWS_IO_DNS_QUERY_FAILED", "AWS_IO_DNS_NO_ADDRESS_FOR_HOST",
})
#: CRT errors of a transfer cut or stalled mid-request
_BROKEN_CRT_ERRORS = frozenset({
    "AWS_IO_SOCKET_CLOSED", "AWS_IO_SOCKET_TIMEOUT", "AWS_IO_BROKEN_PIPE", "AWS_ERROR_HTTP_CONNECTION_CLOSED",
    "AWS_ERROR_HTTP_SERVER_CLOSED", "AWS_ERROR_HTTP_RESPONSE_FIRST_BYTE_TIMEOUT", "AWS_IO_SOCKET_CONNECT_ABORTED",
    "AWS_ERROR_S3_SLOW_DOWN", "AWS_ERROR_S3_INTERNAL_ERROR",
})


def crt_report(message: str, original: Optional[BaseException] = None) -> ClientReport:
    """The S3 error code (or our code for a broken transfer or an unreachable endpoint) of a CRT message,
    read from the client's fixed error texts at their fixed places, never from words a key could contain."""
    kind, _, rest = message.partition(": ")
    code = None
    if kind == "Service error":
        code = _SERVICE_ERRORS.get(rest.split(": ", 1)[0])
    elif kind == "Client error":
        code = next((code for start, code in _CLIENT_ERRORS if rest.startswith(start)), None)
        status = _RESPONSE_STATUS.search(rest) if rest.startswith("Unknown response error") else None
        crt_error = _CRT_ERROR_NAME.search(rest) if code is None and status is None else None
        if status is not None:
            code = status.group(1)
        elif crt_error is not None and crt_error.group(1) in _UNREACHABLE_CRT_ERRORS:
            code = ENDPOINT_UNREACHABLE
        elif crt_error is not None and crt_error.group(1) in _BROKEN_CRT_ERRORS:
            code = CONNECTION_BROKEN
    return ClientReport("s3torchconnector", code, message, original)


def _translated(url: str, config: S3Config, error: Exception) -> OSError:
    from s3torchconnector import S3Exception

    if not isinstance(error, S3Exception):
        unexpected = OSError(f"{url}: s3torchconnector failed: {error!r}")
        unexpected.__cause__ = error
        return unexpected
    return translate_report(url, config.endpoint_url, crt_report(str(error), error))


def open_url(url: str, config: S3Config, part_size: int = 8 << 20, buffer_size: int = 1 << 20) -> BinaryIO:
    """Stream ``url`` from the CRT's part stream; a cut stream resumes with a GET from the byte reached."""
    location = parse_s3_url(url)
    client = crt_client(config, part_size)
    try:
        # The native client reads credentials from the environment when it signs; give it ours.
        with scoped_environ(credential_env(config)):
            size = client.head_object(location.bucket, location.key).size
        process_stats().add(heads=1)
    except Exception as error:
        raise _translated(url, config, error)

    def open_at(offset: int) -> ChunkReader:
        # The CRT splits one GET into ranged GETs of ``part_size``; counted as such, not seen one by one.
        process_stats().add(gets=max(1, -(-(size - offset) // part_size)))
        try:
            with scoped_environ(credential_env(config)):
                parts: Iterator[bytes] = iter(crt_object_stream(client, location.bucket, location.key, offset, size))
        except Exception as error:
            raise _translated(url, config, error)
        pending = memoryview(b"")

        def read_chunk(size_wanted: int) -> bytes:
            nonlocal pending
            while not pending:
                try:
                    pending = memoryview(next(parts))
                except StopIteration:
                    return b""
                except Exception as error:
                    raise _translated(url, config, error)
            chunk, pending = pending[:size_wanted], pending[size_wanted:]
            return chunk.tobytes()

        return ChunkReader(url, read_chunk, expected_size=size - offset)

    return buffered(ResumingReader(url, open_at, config.max_attempts), buffer_size)  # type: ignore[return-value]
