"""A cache entry being filled (:class:`CacheEntry`), and its end: the copy checked and put in place, or
dropped, in the background once the last byte is read (:func:`start_finalizer`).

A pending check holds the shard's lock and its reservation until the copy is renamed into place or dropped.
A process exiting waits up to :data:`FINALIZE_AT_EXIT_S` for its pending checks (:func:`join_finalizers`,
run by a ``multiprocessing.util.Finalize`` exit hook: multiprocessing runs those at interpreter exit and when
a DataLoader worker's ``Process`` ends, also under fork, whose children end in ``os._exit`` without running
``atexit``); one not done by then leaves a ``.part`` file and an incomplete metadata file, never trusted, that
the next process to use the cache removes, and a log line says so. Not waiting at the stream's close instead:
the close comes right after the last read, so the reader would wait for the check as before.
"""
import logging
import multiprocessing.util
import os
import threading
import time
import warnings
from typing import Any, Optional, Set

from ..client.objects import ObjectHead
from .integrity import CopyCheck
from .store import CacheStore
from .writer import CacheWriter

__all__ = ["CacheEntry", "FINALIZE_AT_EXIT_S", "join_finalizers", "start_finalizer", "warn"]

logger = logging.getLogger("torchdata_s3ext")

#: seconds an exiting process waits for its entries still being checked: below the 5 s a DataLoader gives
#: its workers to exit before it terminates them
FINALIZE_AT_EXIT_S = 4.0


def warn(message: str, stacklevel: int) -> None:
    """Log ``message`` and warn with it."""
    logger.warning(message)
    warnings.warn(message, stacklevel=stacklevel)


class CacheEntry:
    """The cache entry a tee fills, what its copy is checked against (``check``), and what becomes of it: put
    in place, or dropped."""

    def __init__(self, store: CacheStore, key: str, url: str, head: ObjectHead, lock: Any, check: CopyCheck) -> None:
        self.store, self.key, self.url, self.head, self.lock, self.check = store, key, url, head, lock, check
        self._ended = False

    def end(self, commit: bool) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if commit:
                self.store.commit(self.key, self.url, self.head)
            else:
                self.store.remove(self.key)
        except OSError as error:  # its metadata could not be written: the entry goes
            self.store.remove(self.key)
            self.store.writing_failed(self.url, error)
        finally:
            self.lock.release()


# -- the checks in the background, and the pending ones at exit

_pending: Set[threading.Thread] = set()
_pending_lock = threading.Lock()
_exit_hook_pid: Optional[int] = None


def _forget_after_fork() -> None:
    global _pending, _pending_lock
    _pending, _pending_lock = set(), threading.Lock()  # the parent's checks are its own, and their threads too


os.register_at_fork(after_in_child=_forget_after_fork)


def start_finalizer(writer: CacheWriter, entry: CacheEntry) -> None:
    """Check ``writer``'s copy and end ``entry`` with it on a thread of its own, tracked until it is done."""
    global _exit_hook_pid
    thread = threading.Thread(target=_finalize, args=(writer, entry), name="s3-cache-finalize", daemon=True)
    with _pending_lock:
        _pending.add(thread)
        if _exit_hook_pid != os.getpid():  # a forked child starts with no hook (multiprocessing clears them)
            _exit_hook_pid = os.getpid()
            multiprocessing.util.Finalize(None, _finish_at_exit, exitpriority=10)
    thread.start()


def _finalize(writer: CacheWriter, entry: CacheEntry) -> None:
    """The source ended: the copy goes in place if it is the whole object, checked (its size, and its checksum
    where ``entry.check`` names one), else it is dropped, with one warning for a failed check."""
    commit = False
    try:
        writer.close()  # every chunk written and checksummed
        url, head = entry.url, entry.head
        if writer.error is not None:
            entry.store.writing_failed(url, writer.error)
        elif writer.written != head.size:
            warn(f"{url}: {writer.written} bytes read, its HEAD said {head.size}; not cached", stacklevel=2)
        else:
            mismatch = entry.check.mismatch(url, writer.checksum)
            if mismatch is not None:
                warn(mismatch, stacklevel=2)
            commit = mismatch is None
    finally:
        try:
            entry.end(commit)
        finally:
            with _pending_lock:
                _pending.discard(threading.current_thread())


def join_finalizers(timeout: Optional[float] = None) -> bool:
    """Wait (at most ``timeout`` seconds) until this process's copies being checked are in place or dropped,
    and their locks free; whether none is left."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _pending_lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _finish_at_exit() -> None:
    if not join_finalizers(FINALIZE_AT_EXIT_S):
        with _pending_lock:
            left = len(_pending)
        logger.warning("%d shard cache entries still being checked after %.0f s at exit: left as temporary files, "
                       "which the next process to use the cache removes", left, FINALIZE_AT_EXIT_S)
