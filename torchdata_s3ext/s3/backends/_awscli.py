"""Backend ``awscli``: the AWS CLI in a subprocess, its output read as the stream (the article's
``pipe:aws s3 cp URL -``).

We run ``aws s3api get-object`` rather than ``aws s3 cp URL -``: when a connection is cut, ``s3 cp`` retries
the download from the start *into the same stdout*, so the stream silently carries the first bytes twice
(measured: 500,000 bytes out for a 300,000-byte object after two cuts). ``s3api get-object`` fails instead;
we check its exit status at the end of the stream and resume with ``--range bytes=N-`` from the byte
reached, so a failed copy is either resumed exactly or an error naming the URL and the CLI's message."""
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import BinaryIO, List, Optional, Sequence

from ..._config import S3Config
from ..clients import aws_cli_options, credential_env
from ..errors import CONNECTION_BROKEN, ENDPOINT_UNREACHABLE, ClientReport, translate_report
from ..stats import process_stats
from ..streams import ChunkReader, ResumingReader, buffered
from ..url import parse_s3_url

__all__ = ["open_url", "find_aws_command"]

_STDERR_LIMIT = 64 << 10
# What the CLI prints, line by line (botocore's own message templates): an S3 error with its code ...
_S3_ERROR = re.compile(r"^An error occurred \((?P<code>[^()\s]+)\) when calling the \w+ operation", re.MULTILINE)
# ... a transfer cut or stalled mid-request (IncompleteReadError, ResponseStreamingError, ReadTimeoutError,
# ConnectionClosedError) ...
_BROKEN = re.compile(
    r"^(?:\d+ read, but total bytes expected is \d+\.|An error occurred while reading from response stream: "
    r"|Read timeout on endpoint URL: |Connection was closed before we received a valid response from endpoint URL: )",
    re.MULTILINE,
)
# ... or no answer at all (EndpointConnectionError, ConnectTimeoutError).
_UNREACHABLE = re.compile(r"^(?:Could not connect to the endpoint URL: |Connect timeout on endpoint URL: )", re.MULTILINE)


def find_aws_command() -> str:
    """``aws`` on PATH, else beside this Python (a virtualenv's bin); ``FileNotFoundError`` if neither."""
    beside_python = os.path.join(os.path.dirname(sys.executable), "aws")
    found = shutil.which("aws") or (beside_python if os.access(beside_python, os.X_OK) else None)
    if found is None:
        raise FileNotFoundError("the awscli backend needs the AWS CLI (`aws`) on PATH; install it with `pip install awscli`")
    return found


def _command(
    url: str, offset: int, body_path: str, config: S3Config, aws_command: Optional[str], extra_args: Sequence[str]
) -> List[str]:
    location = parse_s3_url(url)
    command = [aws_command or find_aws_command(), "s3api", "get-object", "--bucket", location.bucket, "--key", location.key]
    if offset:
        command += ["--range", f"bytes={offset}-"]
    command.append(body_path)
    return command + aws_cli_options(config) + list(extra_args)


def cli_report(stderr: str, returncode: int) -> ClientReport:
    """What the CLI's stderr says went wrong, with the S3 error code (or our code for a broken transfer or an
    unreachable endpoint) read from the lines botocore prints, never from words that a key could contain."""
    message = f"`aws` exited with status {returncode}: {stderr.strip()}"
    code_match = _S3_ERROR.search(stderr)
    if code_match:
        return ClientReport("the AWS CLI", code_match.group("code"), message)
    if _BROKEN.search(stderr):
        return ClientReport("the AWS CLI", CONNECTION_BROKEN, message)
    if _UNREACHABLE.search(stderr):
        return ClientReport("the AWS CLI", ENDPOINT_UNREACHABLE, message)
    return ClientReport("the AWS CLI", None, message)


def _open_process(url: str, offset: int, config: S3Config, aws_command: Optional[str], extra_args: Sequence[str]) -> io.RawIOBase:
    env = dict(os.environ, **credential_env(config), AWS_MAX_ATTEMPTS=str(config.max_attempts))
    # get-object prints its JSON answer on stdout, so the body goes to a pipe of its own.
    body_read, body_write = os.pipe()
    command = _command(url, offset, f"/dev/fd/{body_write}", config, aws_command, extra_args)
    process_stats().add(gets=1)  # the CLI's own retries (AWS_MAX_ATTEMPTS) are not seen
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        pass_fds=(body_write,),
    )
    os.close(body_write)
    stdout = os.fdopen(body_read, "rb")
    stderr_chunks: List[bytes] = []

    def collect_stderr() -> None:
        # Drained on a thread so a chatty CLI cannot block on a full pipe; only the first 64 KiB are kept.
        assert process.stderr is not None
        for line in process.stderr:
            if sum(map(len, stderr_chunks)) < _STDERR_LIMIT:
                stderr_chunks.append(line)

    stderr_thread = threading.Thread(target=collect_stderr, daemon=True)
    stderr_thread.start()
    assert stdout is not None

    def read_chunk(size: int) -> bytes:
        chunk = stdout.read1(size)
        if not chunk:
            returncode = process.wait()
            stderr_thread.join(timeout=5)
            if returncode != 0:
                stderr = b"".join(stderr_chunks).decode(errors="replace")
                raise translate_report(url, config.endpoint_url, cli_report(stderr, returncode))
        return chunk

    def close() -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        stdout.close()

    return ChunkReader(url, read_chunk, close=close)


def open_url(
    url: str, config: S3Config, aws_command: Optional[str] = None, extra_args: Sequence[str] = (), buffer_size: int = 1 << 20
) -> BinaryIO:
    parse_s3_url(url)
    resuming = ResumingReader(url, lambda offset: _open_process(url, offset, config, aws_command, extra_args), config.max_attempts)
    return buffered(resuming, buffer_size)  # type: ignore[return-value]
