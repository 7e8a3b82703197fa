"""Backend ``awscli``: ``aws s3 cp URL -`` in a subprocess, its stdout read as the stream (the article's
``pipe:`` URL). The CLI's exit status is checked at the end of the stream, so a failed copy is an error
naming the URL and the CLI's own message, never a silently short shard."""
import os
import shutil
import subprocess
import sys
import threading
from typing import BinaryIO, List, Optional, Sequence

from .._config import S3Config
from .._errors import translate_client_error
from .._streams import ChunkReader, buffered
from .._url import parse_s3_url

__all__ = ["open_url", "find_aws_command"]

_STDERR_LIMIT = 64 << 10


def find_aws_command() -> str:
    """``aws`` on PATH, else beside this Python (a virtualenv's bin); ``FileNotFoundError`` if neither."""
    beside_python = os.path.join(os.path.dirname(sys.executable), "aws")
    found = shutil.which("aws") or (beside_python if os.access(beside_python, os.X_OK) else None)
    if found is None:
        raise FileNotFoundError("the awscli backend needs the AWS CLI (`aws`) on PATH; install it with `pip install awscli`")
    return found


def _command(url: str, config: S3Config, aws_command: Optional[str], extra_args: Sequence[str]) -> List[str]:
    command = [aws_command or find_aws_command(), "s3", "cp", url, "-", "--only-show-errors"]
    if config.endpoint_url:
        command += ["--endpoint-url", config.endpoint_url]
    if config.region:
        command += ["--region", config.region]
    if config.profile:
        command += ["--profile", config.profile]
    if config.anonymous:
        command += ["--no-sign-request"]
    command += ["--cli-connect-timeout", str(int(config.connect_timeout)), "--cli-read-timeout", str(int(config.read_timeout))]
    return command + list(extra_args)


def _error_from_stderr(url: str, stderr: str, returncode: int) -> OSError:
    for code in ("NoSuchBucket", "NoSuchKey", "AccessDenied", "InvalidAccessKeyId", "SlowDown"):
        if code in stderr:
            return translate_client_error(url, code, stderr.strip())
    if "(404)" in stderr or "Not Found" in stderr:
        return translate_client_error(url, "404", stderr.strip())
    if "(403)" in stderr or "Forbidden" in stderr:
        return translate_client_error(url, "403", stderr.strip())
    if "Could not connect" in stderr or "Connect timeout" in stderr:
        return ConnectionError(f"{url}: cannot reach the endpoint: {stderr.strip()}")
    return OSError(f"{url}: `aws s3 cp` exited with status {returncode}: {stderr.strip()}")


def open_url(
    url: str, config: S3Config, aws_command: Optional[str] = None, extra_args: Sequence[str] = (), buffer_size: int = 1 << 20
) -> BinaryIO:
    parse_s3_url(url)
    env = dict(os.environ, **config.credential_env(), AWS_MAX_ATTEMPTS=str(config.max_attempts))
    process = subprocess.Popen(
        _command(url, config, aws_command, extra_args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env,
    )
    stderr_chunks: List[bytes] = []

    def collect_stderr() -> None:
        # Drained on a thread so a chatty CLI cannot block on a full pipe; only the first 64 KiB are kept.
        assert process.stderr is not None
        for line in process.stderr:
            if sum(map(len, stderr_chunks)) < _STDERR_LIMIT:
                stderr_chunks.append(line)

    stderr_thread = threading.Thread(target=collect_stderr, daemon=True)
    stderr_thread.start()
    stdout = process.stdout
    assert stdout is not None

    def read_chunk(size: int) -> bytes:
        chunk = stdout.read1(size) if hasattr(stdout, "read1") else stdout.read(size)
        if not chunk:
            returncode = process.wait()
            stderr_thread.join(timeout=5)
            if returncode != 0:
                raise _error_from_stderr(url, b"".join(stderr_chunks).decode(errors="replace"), returncode)
        return chunk

    def close() -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        stdout.close()

    return buffered(ChunkReader(url, read_chunk, close=close), buffer_size)  # type: ignore[return-value]
