"""Next-shard prefetch: while a shard is read, the next one is opened on a thread of its own, so that its first
parts are already on the wire when the reader reaches it, and a small shard pays less of its start.

:class:`OpenAhead` runs one opening (a call without arguments that opens one shard) on a thread of its own once
started; :func:`start_after_last_request` starts it once the stream before it has requested its last part (a
stream that offers ``when_all_requested``, as :class:`~.ranged.RangedReader` does; the cache's teeing reader
passes it on), or at once for a stream that does not (a forward stream, a cache hit: no parts fetched ahead).
The ``open`` stage (``samples/opener.py``) keeps at most one opening ahead.

Memory: the shard being read holds its ``(concurrency + 1) * part_size`` bytes of parts; the shard opened ahead
holds its first window, ``concurrency * part_size`` bytes (the parts its reader requests on opening), so a pipe
holds at most ``(2 * concurrency + 1) * part_size`` bytes of parts (208 MiB at 16 MiB x 6). With parts sized
within a ``memory_budget`` (:mod:`.sizing`): the budget, plus the budget less one part ahead, under
``2 * memory_budget`` (224 MiB by default).

Errors: whatever the opening ahead raises is kept, and raised in the consumer's thread when its shard is
reached, never earlier; so is an error of the openings' source itself (it is read one opening ahead). A
stream opened ahead and never handed out (the consumer stopped early, or failed) is closed; its thread is
joined before the next one starts and when the stage closes, so there is never more than one. No thread
exists before the first shard is handed out, so a pipe made before a DataLoader forks its workers carries
none into them.
"""
import threading
from typing import Any, Callable, Optional

__all__ = ["OpenAhead", "start_after_last_request"]


class OpenAhead:
    """One opening, run on a thread of its own once :meth:`start` is called."""

    def __init__(self, opening: Callable[[], Any]) -> None:
        self._opening = opening
        self._go = threading.Event()
        self._discarded = False
        self._opened: Any = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="s3-prefetch", daemon=True)
        self._thread.start()

    def start(self) -> None:
        self._go.set()

    def result(self) -> Any:
        """What the opening returned, or its error raised here (it is started now if it was not yet)."""
        self._go.set()
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._opened

    def discard(self) -> None:
        """Not wanted: never opened if not started yet, else waited for and closed."""
        self._discarded = True
        self._go.set()
        self._thread.join()
        opened, self._opened = self._opened, None
        _close(opened)

    def _run(self) -> None:
        self._go.wait()
        if self._discarded:
            return
        try:
            self._opened = self._opening()
        except BaseException as error:  # raised in the consumer's thread, at this shard
            self._error = error


def _close(opened: Any) -> None:
    """Close the stream in ``opened`` (a stream, or a tuple holding one)."""
    for item in opened if isinstance(opened, tuple) else (opened,):
        close = getattr(item, "close", None)
        if close is not None:
            close()


def start_after_last_request(opened: Any, start: Callable[[], None]) -> None:
    """``start()`` once the stream in ``opened`` has requested its last part, or now if it cannot tell."""
    stream = next((item for item in opened if hasattr(item, "read")), None) if isinstance(opened, tuple) else opened
    when_all_requested = getattr(stream, "when_all_requested", None)
    if when_all_requested is None:
        start()
    else:
        when_all_requested(start)
