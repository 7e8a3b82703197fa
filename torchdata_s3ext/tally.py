"""Counters that a pipe's processes add up together: the main process reads the totals of its DataLoader workers.

A pipe made in the main process owns a :class:`SharedTally`: a small file in shared memory (``/dev/shm`` where
there is one) holding one row of counters per process that adds to it, and the id of the process that owns
each row. The tally pickles as its path, so a DataLoader worker, under ``fork`` and ``spawn`` alike, maps the
same file and adds its counts to a row of its own; a row has one writer at a time, so adding needs no lock,
and a row whose process has ended is taken over by the next one, its counts kept. Rows are claimed under an
``flock`` of the file. ``totals()`` sums the rows. The file is removed when the main process's tally is
garbage collected or the process exits; a worker that finds it gone counts only in its own process.
"""
import fcntl
import mmap
import os
import tempfile
import threading
import weakref
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["SharedTally", "summed_over_ranks"]

#: processes that can hold a row at once (the main process and its DataLoader workers)
ROWS = 128


def _shared_memory_dir() -> Optional[str]:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedTally:
    """Named counters summed over the processes that add to them (see the module docstring)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        handle, self.path = tempfile.mkstemp(prefix="torchdata-s3ext-tally-", dir=_shared_memory_dir())
        with os.fdopen(handle, "wb") as file:
            file.truncate(ROWS * (1 + len(self.fields)) * 8)
        self._finalizer: Optional[weakref.finalize] = weakref.finalize(self, _remove, self.path, os.getpid())
        self._attach()

    def _attach(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._row: Optional[int] = None
        try:
            with open(self.path, "r+b") as file:
                self._map: Optional[mmap.mmap] = mmap.mmap(file.fileno(), 0)
        except (OSError, ValueError):
            self._map = None
            self._owners = self._counts = None
            return
        table = np.frombuffer(self._map, dtype=np.int64)
        self._owners = table[:ROWS]
        self._counts = table[ROWS:].reshape(ROWS, len(self.fields))

    def __getstate__(self) -> Dict[str, Any]:
        return {"fields": self.fields, "path": self.path}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.fields = state["fields"]
        self.path = state["path"]
        self._finalizer = None  # only the process that made the file removes it
        self._attach()

    def _my_row(self) -> Optional[int]:
        """This process's row, claimed on first use (``None`` when the file is gone or every row is held)."""
        if os.getpid() != self._pid:  # forked with the tally: another process, another row
            self._pid, self._row, self._lock = os.getpid(), None, threading.Lock()
        if self._row is None and self._owners is not None:
            self._row = self._claim()
        return self._row

    def _claim(self) -> Optional[int]:
        assert self._owners is not None
        try:
            with open(self.path, "r+b") as file:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX)
                for row in range(ROWS):
                    owner = int(self._owners[row])
                    if owner == 0 or (owner != self._pid and not _alive(owner)):
                        self._owners[row] = self._pid
                        return row
        except OSError:
            pass
        return None

    def add(self, counts: Dict[str, int]) -> None:
        """Add ``counts`` (field -> number) to this process's row."""
        with self._lock:
            row = self._my_row()
            if row is None or self._counts is None:
                return
            for name, number in counts.items():
                if number:
                    self._counts[row, self.fields.index(name)] += number

    def totals(self) -> Dict[str, int]:
        """Every process's counts, added up."""
        if self._counts is None:
            return dict.fromkeys(self.fields, 0)
        summed = self._counts.sum(axis=0)
        return {name: int(summed[index]) for index, name in enumerate(self.fields)}


def _remove(path: str, owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        return  # a forked copy of the owner's tally going away: the owner still needs the file
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def summed_over_ranks(counts: Dict[str, int], group: Optional[Any] = None) -> Dict[str, int]:
    """``counts`` added up over the ranks of a ``torch.distributed`` group (every rank must call it), or as
    they are when no process group is initialised. Counts are CPU tensors, so a gloo group is needed
    under NCCL training (pass one as ``group``)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return dict(counts)
    values = torch.tensor(list(counts.values()), dtype=torch.int64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return {name: int(value) for name, value in zip(counts, values.tolist())}
