"""Backend ``awscli``: the AWS CLI in a subprocess, its output read as the stream (the article's
``pipe:aws s3 cp URL -``).

We run ``aws s3api get-object`` rather than ``aws s3 cp URL -``: when a connection is cut, ``s3 cp`` retries
the download from the start *into the same stdout*, so the stream silently carries the first bytes twice
(measured: 500,000 bytes out for a 300,000-byte object after two cuts). ``s3api get-object`` fails instead;
we check its exit status at the end of the stream and resume with ``--range bytes=N-`` from the byte
reached, so a failed copy is either resumed exactly or an error naming the URL and the CLI's message.

Every key reaches S3 as data. The CLI (v1) loads any parameter value that starts with ``file://``,
``fileb://``, ``http://`` or ``https://`` from that place, and argparse reads a value starting with ``-`` as
an option; ``--cli-input-json``, whose values it takes as they are, is not offered for ``get-object`` (the CLI
leaves it out of every command with a streaming ``outfile``). So the key goes the one way the CLI takes as
it is: ``--key=file:///dev/stdin``, its stdin a pipe that carries the key's UTF-8 bytes (the CLI reads the file
once and never expands what it read; ``PYTHONUTF8=1`` makes it decode them as UTF-8; a ``"\\r"`` would become
``"\\n"`` in its text-mode read, so such a key is refused). Bucket and range travel as
``--bucket=NAME`` and ``--range=bytes=N-`` (``bytes=N-M`` for a byte range that ends before the object does),
which no prefix can start. The command is a list for ``Popen``:
no shell sees a key or a URL."""
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import BinaryIO, Dict, List, Optional, Sequence

from ..._config import S3Config
from ..client.clients import aws_cli_options
from ..client.credentials import credential_env
from ..client.errors import (
    CONNECTION_BROKEN,
    ENDPOINT_UNREACHABLE,
    Classification,
    ClientReport,
    classification,
    translate_report,
)
from ..client.objects import ObjectHead, head_object
from ..io.ranges import check_range, clamp_range, empty_range, is_whole
from ..io.streams import ChunkReader, ResumingReader, buffered
from ..stats import process_stats
from ..url import parse_s3_url

__all__ = ["classify", "cli_report", "find_aws_command", "key_bytes", "open_url"]

ALTERNATIVES = "boto3, fsspec, iopath, s3torchconnector"
_STDERR_LIMIT = 64 << 10
_MAX_KEY_BYTES = 1024  # S3's limit; written to the CLI's stdin before it starts, so it must fit in a pipe's buffer
# What the CLI prints, line by line (botocore's own message templates): an S3 error with its code ...
_S3_ERROR = re.compile(r"^An error occurred \((?P<code>[^()\s]+)\) when calling the \w+ operation", re.MULTILINE)
# ... a transfer cut, stalled or garbled mid-request (IncompleteReadError, ResponseStreamingError,
# ReadTimeoutError, ConnectionClosedError, FlexibleChecksumError) ...
_BROKEN = re.compile(
    r"^(?:\d+ read, but total bytes expected is \d+\.|An error occurred while reading from response stream: "
    r"|Read timeout on endpoint URL: |Connection was closed before we received a valid response from endpoint URL: "
    r"|Expected checksum \S+ did not match calculated checksum: )",
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


def key_bytes(url: str) -> bytes:
    """The key of ``url`` as the CLI reads it from its stdin; ``ValueError`` for a key it would change."""
    key = parse_s3_url(url).key
    if "\r" in key:  # the CLI reads the key file in text mode, which turns "\r" into "\n"
        raise ValueError(f"the awscli backend cannot read {url!r}: the AWS CLI changes a carriage return in a key; "
                         f"use another backend: {ALTERNATIVES}")
    data = key.encode("utf-8")
    if len(data) > _MAX_KEY_BYTES:
        raise ValueError(f"{url!r}: an S3 key is at most {_MAX_KEY_BYTES} bytes, this one has {len(data)}")
    return data


def _command(
    url: str, offset: int, body_path: str, config: S3Config, aws_command: str, extra_args: Sequence[str],
    etag: Optional[str] = None, end: Optional[int] = None,
) -> List[str]:
    """The CLI's command that writes bytes ``offset .. end-1`` (``end=None``: to the object's end) to ``body_path``."""
    location = parse_s3_url(url)
    command = [aws_command, "s3api", "get-object", f"--bucket={location.bucket}", "--key=file:///dev/stdin"]
    if offset or end is not None:
        command.append(f"--range=bytes={offset}-{'' if end is None else end - 1}")
    if etag:
        command.append(f"--if-match={etag}")  # every GET of the stream reads the version the HEAD saw
    command.append(body_path)
    return command + aws_cli_options(config) + list(extra_args)


def classify(stderr: str) -> Classification:
    """The AWS CLI's classifier: the S3 error code (or our code for a broken transfer or an unreachable
    endpoint) of what it printed, read from the lines botocore prints, never from words that a key could
    contain, and whether another attempt may help; code ``None`` for anything else (not retried)."""
    code_match = _S3_ERROR.search(stderr)
    if code_match:
        return classification(code_match.group("code"))
    if _BROKEN.search(stderr):
        return classification(CONNECTION_BROKEN)
    if _UNREACHABLE.search(stderr):
        return classification(ENDPOINT_UNREACHABLE)
    return classification(None)


def cli_report(stderr: str, returncode: int) -> ClientReport:
    """What the CLI's stderr says went wrong, as a :class:`~torchdata_s3ext.s3.client.errors.ClientReport`."""
    return ClientReport("the AWS CLI", classify(stderr).code, f"`aws` exited with status {returncode}: {stderr.strip()}")


def _start_cli(command: List[str], key: bytes, env: Dict[str, str], body_write: int) -> "subprocess.Popen[bytes]":
    """The CLI's process for ``command``, ``key`` on its stdin (it fits in the pipe's buffer), the body to the
    pipe ``body_write`` (get-object prints its JSON answer on stdout)."""
    key_read, key_write = os.pipe()
    with os.fdopen(key_write, "wb") as key_pipe:
        key_pipe.write(key)
    try:
        return subprocess.Popen(command, stdin=key_read, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                pass_fds=(body_write,))
    finally:
        os.close(key_read)


class _CliRun:
    """One CLI run's body, read in chunks; its exit status is read at the body's end, and a failure raised as
    ours, naming the URL, with what the CLI printed (its stderr drained on a thread, the first 64 KiB kept, so
    a chatty CLI cannot block on a full pipe)."""

    def __init__(self, url: str, config: S3Config, process: "subprocess.Popen[bytes]", body_read: int) -> None:
        self.url, self.config, self.process = url, config, process
        self.body = os.fdopen(body_read, "rb")
        self._stderr: List[bytes] = []
        self._stderr_thread = threading.Thread(target=self._collect_stderr, daemon=True)
        self._stderr_thread.start()

    def _collect_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if sum(map(len, self._stderr)) < _STDERR_LIMIT:
                self._stderr.append(line)

    def read_chunk(self, size: int) -> bytes:
        chunk = self.body.read1(size)
        if not chunk:
            returncode = self.process.wait()
            self._stderr_thread.join(timeout=5)
            if returncode != 0:
                stderr = b"".join(self._stderr).decode(errors="replace")
                raise translate_report(self.url, self.config.endpoint_url, cli_report(stderr, returncode))
        return chunk

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.body.close()


def _open_process(
    url: str, offset: int, config: S3Config, aws_command: Optional[str], extra_args: Sequence[str], head: ObjectHead,
    end: int,
) -> io.RawIOBase:
    """The CLI's run that streams bytes ``offset .. end-1``, checked to deliver them all. One attempt per run
    (``AWS_MAX_ATTEMPTS=1``): a failed run is resumed by ``ResumingReader``, which counts it."""
    env = dict(os.environ, **credential_env(config), AWS_MAX_ATTEMPTS="1", PYTHONUTF8="1")
    aws = aws_command or find_aws_command()
    key = key_bytes(url)  # the key goes through the CLI's stdin: see the module's docstring
    body_read, body_write = os.pipe()
    command = _command(url, offset, f"/dev/fd/{body_write}", config, aws, extra_args, head.etag,
                       None if end >= head.size else end)
    process_stats().add(gets=1)
    try:
        process = _start_cli(command, key, env, body_write)
    except BaseException:
        os.close(body_read)
        raise
    finally:
        os.close(body_write)
    run = _CliRun(url, config, process, body_read)
    return ChunkReader(url, run.read_chunk, close=run.close, expected_size=end - offset, start=offset)


def open_url(
    url: str, config: S3Config, aws_command: Optional[str] = None, extra_args: Sequence[str] = (), buffer_size: int = 1 << 20,
    *, start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """Stream ``url`` from the CLI. One HEAD first (through boto3) gives the object's size, against which each
    CLI run's body is checked, and its ETag, which pins every run to that version (``--if-match``): the CLI
    itself tells the ETag only once a GET has finished, too late for a read resumed after a cut.

    ``start``/``end``: the CLI asks for bytes ``start .. end-1`` only (``--range``), and a run resumed after a
    cut for the rest of them; forward-only, not seekable. An empty range runs no CLI."""
    check_range(url, start, end)
    key_bytes(url)  # a key the CLI cannot take is refused before any request
    head = head_object(url, config)
    whole = is_whole(start, end)
    start, end = clamp_range(start, end, head.size)
    if start == end and not whole:  # an empty object read whole still runs the CLI, as it always did
        return empty_range(url, start)  # type: ignore[return-value]
    resuming = ResumingReader(
        url, lambda offset: _open_process(url, offset, config, aws_command, extra_args, head, end), config.max_attempts,
        start=start,
    )
    return buffered(resuming, buffer_size)  # type: ignore[return-value]
