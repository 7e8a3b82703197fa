"""A measurement in a process of its own: ``python -m MODULE JOB.json RESULT.json``, the parent's side
(:func:`run_in_child`) and the child's (:func:`child_main`).

The child writes its result dictionary, or, when the measurement raised, the exception's type and message
(and its traceback) under :data:`CHILD_ERROR`; the parent turns that into :class:`ChildFailed` whose message is
``"ValueError: batch_size should be a positive integer ..."``, never a traceback's first line. A child that
dies without a word (killed, crashed in C) is reported by its signal or exit status and the last line it
printed.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from ..cli_checks import one_line
from .cpus import pinned_to
from .progress import PROGRESS_ENV, read_progress

__all__ = ["CHILD_ERROR", "ChildFailed", "child_main", "error_message", "run_in_child"]

#: the key of a child's result that holds its measurement's exception instead of a result
CHILD_ERROR = "__child_error__"


class ChildFailed(Exception):
    """A child measurement ended without a result. ``str()`` is one line (the exception's type and message, or
    how the process ended); ``detail`` the child's traceback or the end of its stderr, for the JSON."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def error_message(error: BaseException) -> str:
    """``"TypeName: message"`` on one line (``"TypeName"`` alone when the message is empty).

    >>> error_message(ValueError("batch_size should be\\n a positive integer"))
    'ValueError: batch_size should be a positive integer'
    """
    text = one_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _how_it_ended(returncode: int, stderr: str) -> str:
    """One line for a child that left no result: its last line of stderr (Python's last traceback line is
    ``Type: message``), and the signal that killed it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1][:500] if lines else ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" + (f"; it last printed: {last}" if last else "")
    return last or f"exit status {returncode}"


def _read_result(result_path: str, returncode: int, stderr: str) -> Dict[str, Any]:
    result = None
    if os.path.exists(result_path):
        with open(result_path) as result_file:
            result = json.load(result_file)
    if result is not None and CHILD_ERROR in result:
        raise ChildFailed(result[CHILD_ERROR]["message"], result[CHILD_ERROR]["traceback"])
    if returncode != 0 or result is None:
        raise ChildFailed(_how_it_ended(returncode, stderr), "\n".join(stderr.strip().splitlines()[-20:]))
    return result


def run_in_child(
    module: str, job_json: str, timeout: float, env: Optional[Dict[str, str]] = None,
    progress: Optional[Callable[[Optional[int]], None]] = None, cpus: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    """``python -m module JOB.json RESULT.json`` with ``job_json``, on ``cpus`` (``None``: any); the dictionary it
    wrote, or ``ChildFailed``. ``progress`` gets the child's count of batches as it grows, then ``None``."""
    with tempfile.TemporaryDirectory(prefix="torchdata-s3ext-bench-") as workdir:
        job_path, result_path = os.path.join(workdir, "job.json"), os.path.join(workdir, "result.json")
        progress_path = os.path.join(workdir, "progress")
        with open(job_path, "w") as job_file:
            job_file.write(job_json)
        command = [sys.executable, "-m", module, job_path, result_path]
        with pinned_to(cpus):  # the child, its DataLoader workers and the commands they run inherit it
            child = subprocess.Popen(
                command, env={**os.environ, **(env or {}), PROGRESS_ENV: progress_path}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    _, stderr = child.communicate(timeout=0.25)  # keeps reading the pipes while it waits
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        progress(read_progress(progress_path))
                    if time.monotonic() > deadline:
                        child.kill()
                        child.communicate()
                        raise ChildFailed(f"killed after {timeout:.0f} s") from None
        finally:
            if progress is not None:
                progress(None)
        return _read_result(result_path, child.returncode, stderr)


def child_main(job_path: str, result_path: str, measure: Callable[[str], Dict[str, Any]]) -> None:
    """A child's whole work: the job file's text to ``measure``, its result (or the exception it raised, which
    then also sets the exit status to 1) to the result file."""
    with open(job_path) as job_file:
        job_json = job_file.read()
    failed = False
    try:
        result = measure(job_json)
    except Exception as error:  # any failure of a method is its result: the parent reports it and goes on
        failed = True
        result = {CHILD_ERROR: {"message": error_message(error), "traceback": traceback.format_exc()}}
    with open(result_path, "w") as result_file:
        json.dump(result, result_file)
    if failed:
        sys.exit(1)
