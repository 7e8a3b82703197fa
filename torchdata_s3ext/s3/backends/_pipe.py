"""Backend ``pipe``: webdataset's ``pipe:COMMAND`` URLs, the command's stdout read as the stream.

The command is what follows ``pipe:``, run as webdataset's ``gopen_pipe`` runs it (``Popen(command,
shell=True, stdout=PIPE, bufsize=...)``): by ``/bin/sh``, as the user wrote it, so a list such as
``pipe:aws s3 cp s3://bkt/shard-000000.tar -`` reads as it does with webdataset. Only what the user wrote
reaches the shell: no backend builds a command from a URL or a key (an ``s3://`` URL goes to an S3 backend,
whatever characters it holds). As with webdataset, run only commands you trust.

Where we differ from webdataset, and why:

- A shard never ends short in silence. When the output ends, the command's exit status is read before the
  last (empty) read returns, and any status but 0 raises an ``OSError`` naming the URL, the command, its
  status (or the signal that killed it), the bytes it delivered and the last 4 KiB of its stderr; webdataset
  raises only at ``close()`` and passes status 141 (a shell's SIGPIPE). So stderr is collected (drained on a
  thread, so a chatty command never blocks) rather than shown.
- The command runs in a session of its own, and ``close()`` (or the stream being collected) sends
  ``SIGKILL`` to its whole process group, then reaps the shell: no zombie, and no ``sleep`` or ``aws`` left
  behind by a shell that started it. ``close()`` kills before it takes the buffer's lock, so it also ends a
  read blocked in another thread. In a terminal, Ctrl-C therefore reaches Python, not the command; the
  stream's ``close()`` stops the command then.
- No timeout: a command that hangs without output blocks the read, as it would in a shell; closing the
  stream stops it.
- No retries: a command is not known to be idempotent or to resume (``aws s3 cp`` retries a cut download
  into the same stdout, which then carries bytes twice; see the ``awscli`` backend), so a failure is raised
  at once, to the ``on_error`` policy of the pipes downstream.
- ``S3Config`` is not used (endpoint, credentials, ``max_attempts``): the command reaches what it reaches
  with its own options and the environment it inherits. Request counts see only the bytes received.
- A byte range (``start``/``end``) cannot reach a command's stdout: the command still writes from its first
  byte, the ``start`` bytes before the range are read and dropped (and counted as received), and the stream
  ends at ``end``, where the command is stopped by ``close()`` without its exit status being read. Output
  that ends before ``end`` is checked as any output is.
"""
import io
import os
import signal
import subprocess
import threading
from typing import BinaryIO, Callable, IO, Optional

from ..._config import S3Config
from ..client.errors import ClientReport, translate_report
from ..io.ranges import ByteRange, check_range
from ..io.streams import ChunkReader
from ..url import pipe_command

__all__ = ["open_url", "exit_description"]

#: the bytes of a command's stderr that an error quotes: its last ones
STDERR_TAIL = 4 << 10
_STDERR_WAIT = 2.0  # seconds to let stderr drain once the command has failed (a grandchild may hold it open)


def exit_description(returncode: int) -> str:
    """How a command ended, from ``Popen.returncode``; a shell reports a child killed by signal N as 128 + N.

    >>> exit_description(3), exit_description(-9), exit_description(137)
    ('exited with status 3', 'was killed by signal SIGKILL', 'exited with status 137 (128 + SIGKILL)')
    """
    if returncode < 0:
        return f"was killed by signal {_signal_name(-returncode)}"
    if 128 < returncode < 128 + 65:
        return f"exited with status {returncode} (128 + {_signal_name(returncode - 128)})"
    return f"exited with status {returncode}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class _StderrTail:
    """The last :data:`STDERR_TAIL` bytes a command writes to stderr, drained on a daemon thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._tail = bytearray()
        self._truncated = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with self._stream:  # the thread owns the pipe: it closes it when the last writer has gone
            for chunk in iter(lambda: self._stream.read(1 << 16), b""):
                self._tail += chunk
                if len(self._tail) > STDERR_TAIL:
                    self._truncated = True
                    del self._tail[:-STDERR_TAIL]

    def text(self) -> str:
        self._thread.join(_STDERR_WAIT)
        text = bytes(self._tail).decode(errors="replace")
        if self._truncated:
            text = "[...] " + text.split("\n", 1)[-1]  # from the first whole line kept
        return text.strip()


class _CommandStream(io.BufferedReader):
    """The command's output behind a buffer, with ``command`` and the shell's ``pid``; ``close()`` stops the
    command before it takes the buffer's lock, so that a read blocked in another thread returns."""

    def __init__(self, raw: io.RawIOBase, buffer_size: int, stop: Callable[[], None], command: str, pid: int) -> None:
        super().__init__(raw, buffer_size)
        self._stop = stop
        self.command = command
        self.pid = pid

    def close(self) -> None:
        if not self.closed:
            self._stop()
        super().close()


def open_url(
    url: str, config: S3Config, buffer_size: int = 1 << 20, *, start: int = 0, end: Optional[int] = None,
) -> BinaryIO:
    """Start the command of ``pipe:COMMAND`` through the shell and stream its stdout, behind ``buffer_size``
    bytes of buffer. ``config`` is ignored (see the module's docstring): the command is the user's.
    ``start``/``end``: bytes ``start .. end-1`` of the output, the ones before read and dropped; forward-only."""
    check_range(url, start, end)
    command = pipe_command(url)
    try:
        # Unbuffered pipes: the one buffer is ours. A session of its own, so close() can stop every process in it.
        process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                   start_new_session=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot start the shell for {command!r}: {error.strerror}", url) from error
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout
    stderr = _StderrTail(process.stderr)
    closing = threading.Event()

    def read_chunk(size: int) -> bytes:
        chunk = stdout.read(size)
        if chunk:
            return chunk
        returncode = process.wait()  # known before the last b"" is returned: a failed command is never a short shard
        if returncode == 0:
            return b""
        stopped = " (stopped: the stream was closed)" if closing.is_set() else ""
        text = (f"{exit_description(returncode)}{stopped} after {reader.bytes_read} bytes; "
                f"stderr: {stderr.text() or '(empty)'}")
        raise translate_report(url, None, ClientReport(f"the command {command!r}", None, text))

    def stop() -> None:
        closing.set()
        if process.returncode is None:  # not reaped yet, so its pid still names its process group
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()

    def close() -> None:
        stop()
        stdout.close()

    reader = ChunkReader(url, read_chunk, close=close)
    raw = reader if start == 0 and end is None else ByteRange(url, reader, start, end)
    return _CommandStream(raw, buffer_size, stop, command, process.pid)  # type: ignore[return-value]
