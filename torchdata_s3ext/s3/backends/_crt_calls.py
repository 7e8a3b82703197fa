"""Threads that call into the CRT (s3torchconnector's native client), made so that a call is bounded by
``read_timeout``, and no thread keeps a process from exiting or aborts it as it ends.

The CRT's calls take no timeout of ours: a HEAD, a GET's first part or a later one that nobody sends waits
for the CRT's own timeouts (a HEAD on a black hole that closed after 3 s returned after 14 s here). So each
call runs on a daemon thread, and its caller waits for it at most ``read_timeout`` (:func:`call_within`, and
the part queue of a GET). A daemon thread must not come back from the CRT while the interpreter finalizes:
pyo3 then aborts the whole process (measured: "FATAL: exception not rethrown", exit status 134). So at exit
(``atexit`` runs before finalizing) every stream still open is closed, which ends at once the threads that
wait for their reader, and the threads still inside the CRT get up to their ``read_timeout`` to come back.
"""
import atexit
import collections
import errno
import os
import queue
import threading
import time
import weakref
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, TypeVar

from ..client.errors import Stalled

__all__ = ["PartQueue", "call_within", "close_at_exit", "start_thread"]

T = TypeVar("T")

_lock = threading.Lock()
#: every CRT thread still running, with how long exit may wait for it
_running: Dict[threading.Thread, float] = {}
#: what exit closes first: the part streams still open
_open: "weakref.WeakSet[Any]" = weakref.WeakSet()


def start_thread(target: Callable[[], None], name: str, exit_wait: float) -> threading.Thread:
    """Run ``target`` on a daemon thread that exit waits for up to ``exit_wait`` seconds."""

    def run() -> None:
        try:
            target()
        finally:
            with _lock:
                _running.pop(threading.current_thread(), None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _lock:
        _running[thread] = exit_wait
    thread.start()
    return thread


def close_at_exit(stream: Any) -> None:
    """Close ``stream`` (anything with ``close()``) at exit if it is still open then; held weakly."""
    _open.add(stream)


def call_within(url: str, read_timeout: float, call: Callable[[], T]) -> T:
    """``call()`` (one CRT request), on a thread of its own; :class:`~..errors.Stalled` naming ``url`` if it
    has not returned within ``read_timeout`` seconds (the thread stays until the CRT gives up)."""
    outcome: List[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # raised in the caller's thread
            outcome.append((False, error))
        finally:
            done.set()

    start_thread(run, "s3-crt-call", read_timeout)
    if not done.wait(read_timeout):
        raise Stalled(errno.ETIMEDOUT, f"no answer from the CRT within read_timeout={read_timeout:g} s", url)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


class PartQueue:
    """The CRT's parts of one GET, pulled by a thread of their own, at most ``depth`` waiting for the reader:
    memory stays at ``depth`` parts plus the one the thread holds, and the reader can wait with a timeout.

    The GET itself is started on that thread too (``open_parts()``): the CRT's ``get_object`` returns only
    once the first part has arrived, so a stall there is a stall like any other. At exit, the queue is closed
    and its thread waited for up to ``exit_wait`` seconds (see this module's docstring)."""

    def __init__(self, open_parts: Callable[[], Iterable[bytes]], exit_wait: float, depth: int = 1) -> None:
        self._changed = threading.Condition()
        self._waiting: Deque[bytes] = collections.deque()
        self._depth = depth
        self._ended = False
        self._error: Optional[BaseException] = None
        self._closed = False
        close_at_exit(self)
        start_thread(lambda: self._pull(open_parts), "s3-crt-parts", exit_wait)

    def _pull(self, open_parts: Callable[[], Iterable[bytes]]) -> None:
        try:
            for part in open_parts():
                with self._changed:
                    self._changed.wait_for(lambda: len(self._waiting) < self._depth or self._closed)
                    if self._closed:
                        return  # the reader gave up on this GET: drop the CRT's stream
                    self._waiting.append(part)
                    self._changed.notify_all()
        except Exception as error:  # the reader raises it, translated
            self._error = error
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def next_part(self, timeout: float) -> Optional[bytes]:
        """The next part, ``None`` once the GET ended; ``queue.Empty`` if none arrived within ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._waiting or self._ended, timeout):
                raise queue.Empty
            if self._waiting:
                part = self._waiting.popleft()
                self._changed.notify_all()
                return part
        if self._error is not None:
            raise self._error
        return None

    def close(self) -> None:
        """Stop pulling; a thread stuck in the CRT's ``next()`` leaves once it returns."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()


def _wait_at_exit() -> None:
    for stream in list(_open):
        stream.close()
    started = time.monotonic()
    with _lock:
        running = list(_running.items())
    for thread, exit_wait in running:
        thread.join(max(0.0, started + exit_wait - time.monotonic()))


atexit.register(_wait_at_exit)


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _running.clear()  # the parent's threads do not exist here
    _open.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
