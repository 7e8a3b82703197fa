"""A bench method's progress, from the process measuring it to the command's progress bar.

The measuring child writes how many batches it has done into a small file now and then
(:class:`ProgressFile`, at most a few times a second, so the timing is not disturbed); the parent, waiting
for the child, reads it and moves a ``tqdm`` bar (:func:`progress_bar`).
"""
import os
import time
from typing import Any, Callable, Optional

__all__ = ["PROGRESS_ENV", "ProgressFile", "progress_bar", "read_progress"]

#: the variable that tells a measuring child where to write its progress
PROGRESS_ENV = "TORCHDATA_S3EXT_BENCH_PROGRESS"
_INTERVAL = 0.25


class ProgressFile:
    """The child's side: ``done(count)`` after each batch; writes ``count`` to the file named by
    ``PROGRESS_ENV`` at most every quarter second (nothing when the variable is unset)."""

    def __init__(self) -> None:
        self.path = os.environ.get(PROGRESS_ENV)
        self._written_at = 0.0

    def done(self, count: int, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if force or now - self._written_at >= _INTERVAL:
            self._written_at = now
            partial = f"{self.path}.partial"
            with open(partial, "w") as file:
                file.write(str(count))
            os.replace(partial, self.path)  # the parent never reads half a number


def read_progress(path: str) -> int:
    """The count the child wrote last (0 before it wrote any)."""
    try:
        with open(path) as file:
            return int(file.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def progress_bar(total: int, description: str, enabled: bool) -> Callable[[Optional[int]], None]:
    """A function to call with the child's count as it grows, and with ``None`` once the child is done; it
    moves a ``tqdm`` bar on stderr (shown on a terminal only, when ``enabled``)."""
    from tqdm.auto import tqdm

    bar: Any = tqdm(total=total, desc=description, unit="batch", leave=False, disable=None if enabled else True)

    def update(count: Optional[int]) -> None:
        if count is None:
            bar.close()
        elif count > bar.n:
            bar.update(min(count, total) - bar.n)

    return update
