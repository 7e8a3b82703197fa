"""Backend ``awscli``: the AWS CLI in a subprocess, its output read as the stream (the article's
``pipe:aws s3 cp URL -``).

We run ``aws s3api get-object`` rather than ``aws s3 cp URL -``: when a connection is cut, ``s3 cp`` retries
the download from the start *into the same stdout*, so the stream silently carries the first bytes twice
(measured: 500,000 bytes out for a 300,000-byte object after two cuts). ``s3api get-object`` fails instead;
we check its exit status at the end of the stream and resume with ``--range bytes=N-`` from the byte
reached, so a failed copy is either resumed exactly or an error naming the URL and the CLI's message."""
import io
import os
import shutil
import subprocess
import sys
import threading
from typing import BinaryIO, List, Optional, Sequence

from ..._config import S3Config
from ..errors import translate_client_error, unreachable_endpoint
from ..retry import TransientError
from ..stats import process_stats
from ..streams import ChunkReader, ResumingReader, buffered
from ..url import parse_s3_url

__all__ = ["open_url", "find_aws_command"]

_STDERR_LIMIT = 64 << 10
_TRANSIENT_MARKS = ("SlowDown", "(503)", "(500)", "InternalError", "Connection was closed", "Read timeout",
                    "IncompleteRead", "Connection broken", "reset by peer", "ResponseStreamingError")


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
    if config.endpoint_url:
        command += ["--endpoint-url", config.endpoint_url]
    if config.region:
        command += ["--region", config.region]
    if config.profile:
        command += ["--profile", config.profile]
    if config.anonymous:
        command += ["--no-sign-request"]
    if not config.verify_ssl:
        command += ["--no-verify-ssl"]
    command += ["--cli-connect-timeout", str(int(config.connect_timeout)), "--cli-read-timeout", str(int(config.read_timeout))]
    return command + list(extra_args)


def _error_from_stderr(url: str, endpoint: Optional[str], stderr: str, returncode: int) -> OSError:
    message = stderr.strip()
    for code in ("NoSuchBucket", "NoSuchKey", "AccessDenied", "InvalidAccessKeyId"):
        if code in stderr:
            return translate_client_error(url, code, message)
    if "(404)" in stderr or "Not Found" in stderr:
        return translate_client_error(url, "404", message)
    if "(403)" in stderr or "Forbidden" in stderr:
        return translate_client_error(url, "403", message)
    if any(mark in stderr for mark in _TRANSIENT_MARKS):
        return TransientError(f"{url}: `aws` failed transiently (status {returncode}): {message}")
    if "Could not connect" in stderr or "Connect timeout" in stderr:
        return unreachable_endpoint(url, endpoint, message)
    return OSError(f"{url}: `aws` exited with status {returncode}: {message}")


def _open_process(url: str, offset: int, config: S3Config, aws_command: Optional[str], extra_args: Sequence[str]) -> io.RawIOBase:
    env = dict(os.environ, **config.credential_env(), AWS_MAX_ATTEMPTS=str(config.max_attempts))
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
                raise _error_from_stderr(url, config.endpoint_url, b"".join(stderr_chunks).decode(errors="replace"), returncode)
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
