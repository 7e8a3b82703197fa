"""SageMaker Pipe Mode's FIFOs: where a channel's FIFO for an epoch is, and opening it as its one reader.

In Pipe Mode SageMaker's agent makes, for each channel and epoch, a FIFO ``<input_dir>/<channel>_<epoch>``
(``/opt/ml/input/data/train_0``, ``train_1``, ...) and writes the channel's S3 objects into it one after
another, once: nothing marks where one object ends. A FIFO has one reader: two processes reading it would
each get an arbitrary part of the bytes, so :func:`open_fifo` takes an exclusive ``flock`` on it and refuses to
be a second reader. Every wait is bounded: for the FIFO to appear (the agent makes epoch ``k + 1``'s after
epoch ``k``'s is read), and for the agent to open it (a blocking ``open()`` of a FIFO waits for a writer
forever; here the FIFO is opened without blocking and polled). Once bytes flow, reads block as long as the
agent takes.
"""
import errno
import fcntl
import io
import os
import select
import stat
import time
from typing import BinaryIO

__all__ = ["DEFAULT_INPUT_DIR", "DEFAULT_TIMEOUT", "fifo_path", "open_fifo", "second_reader_error"]

#: where SageMaker puts the channels (``SM_INPUT_DATA_DIR`` in its training toolkit)
DEFAULT_INPUT_DIR = "/opt/ml/input/data"
#: seconds to wait for the FIFO to appear and then for the agent to start writing into it
DEFAULT_TIMEOUT = 300.0
_POLL_INTERVAL = 0.05
_BUFFER_SIZE = 1 << 20

ONE_READER_ADVICE = (
    "a Pipe Mode FIFO has one reader: give each rank (each reading process) a channel of its own "
    "(channel=f'train{rank}', one input channel per rank in the training job), and read each channel with "
    "num_workers=0 or 1, decoding in that process"
)


def fifo_path(channel: str, epoch: int, input_dir: str = DEFAULT_INPUT_DIR) -> str:
    """The FIFO SageMaker makes for ``channel`` in ``epoch`` (counted from 0).

    Raises:
        ValueError: ``channel`` is empty or holds a ``/``, or ``epoch`` is not an int >= 0

    >>> fifo_path("train", 3)
    '/opt/ml/input/data/train_3'
    """
    if not isinstance(channel, str) or not channel or "/" in channel:
        raise ValueError(f"channel must be a SageMaker channel name (no '/'), not {channel!r}")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0 (SageMaker counts epochs from 0), not {epoch!r}")
    return os.path.join(input_dir, f"{channel}_{epoch}")


def second_reader_error(path: str, who: str) -> ValueError:
    """The error for a second reader of the FIFO at ``path``; ``who`` says who the readers are."""
    return ValueError(f"{who} would read the same Pipe Mode FIFO {path!r}: {ONE_READER_ADVICE}")


def _wait_for(path: str, deadline: float, timeout: float) -> os.stat_result:
    while True:
        try:
            return os.stat(path)
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_INTERVAL)
    channel_dir = path.rsplit("_", 1)[0]
    hint = (
        f"; {channel_dir!r} is a directory: the channel is in File mode, read its files with "
        f"wds_pipe({channel_dir!r}, backend='local')"
        if os.path.isdir(channel_dir)
        else "; is the channel's InputMode 'Pipe', and was the previous epoch's FIFO read to its end?"
    )
    raise FileNotFoundError(errno.ENOENT, f"no Pipe Mode FIFO appeared within {timeout:g} s{hint}", path)


def open_fifo(path: str, timeout: float = DEFAULT_TIMEOUT) -> BinaryIO:
    """Open the Pipe Mode FIFO at ``path`` for reading, as its one reader: a buffered binary stream that ends
    when the agent closes the FIFO.

    Waits up to ``timeout`` seconds in all for ``path`` to appear and for a writer to open it and write (or
    close it: an empty channel is an empty stream).

    Raises:
        FileNotFoundError: no FIFO appeared within ``timeout``
        ValueError: ``path`` is not a FIFO (a regular file, a directory: not a channel in Pipe Mode), or
            another reader has it open (see :func:`second_reader_error`)
        TimeoutError: the FIFO appeared but no writer opened it within ``timeout``
    """
    deadline = time.monotonic() + timeout
    mode = _wait_for(path, deadline, timeout).st_mode
    if not stat.S_ISFIFO(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "not a FIFO"
        raise ValueError(
            f"{path!r} is {kind}, not a FIFO: Pipe Mode reads a FIFO made by SageMaker for a channel whose "
            "InputMode is 'Pipe'; a File mode channel is a directory of files (read it with wds_pipe)"
        )
    # Without O_NONBLOCK, open() would wait for the agent without a bound.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise second_reader_error(path, "another reader has it open; this one") from None
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # Linux reports neither POLLIN nor POLLHUP before a writer has come: this waits for the agent.
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise TimeoutError(errno.ETIMEDOUT, f"no writer opened the Pipe Mode FIFO within {timeout:g} s", path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return io.open(fd, "rb", buffering=_BUFFER_SIZE)  # type: ignore[return-value]
    except BaseException:
        os.close(fd)
        raise
