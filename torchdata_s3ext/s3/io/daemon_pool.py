"""A small thread pool whose threads are daemons, so that a stream's parts in flight never keep a process from
exiting.

``concurrent.futures.ThreadPoolExecutor``'s threads are not daemons, and at exit Python runs every task still
queued on them and waits for each: a stream left open with parts queued against a silent endpoint held the
exit for ``max_attempts * read_timeout`` per part. These threads are daemons instead; what they run is plain
Python over sockets (botocore, s3fs, iopath), which the interpreter may stop at exit. (Threads inside a native
client need more care: see ``backends/_crt_calls.py``.)
"""
import concurrent.futures
import queue
import threading
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["DaemonPool"]

_Task = Tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class DaemonPool:
    """``submit(call) -> Future`` on at most ``workers`` daemon threads named ``name_*``, started as tasks come;
    ``shutdown`` as ``ThreadPoolExecutor``'s (``wait``, ``cancel_futures``)."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers = workers
        self._name = name
        self._tasks: "queue.SimpleQueue[Optional[_Task]]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut_down = False

    def submit(self, call: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        with self._lock:
            if self._shut_down:
                raise RuntimeError(f"cannot submit to the {self._name} pool after shutdown")
            self._tasks.put((future, call))
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No more tasks; with ``cancel_futures``, the queued ones are cancelled; with ``wait``, the running ones
        are waited for."""
        with self._lock:
            self._shut_down = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in threads:
            self._tasks.put(None)  # one stop sign per thread, after the tasks still queued
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, call = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as error:  # the future's owner raises it
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, call, task  # no reference to a part's memory kept while idle
