"""The epochs of a pipe, counted by the pipe itself: each new iteration of it is its next epoch (the first is
1), the same number in every process that reads that iteration.

The DataLoader workers of one iteration read one epoch. They are told apart from the next iteration's by
the seed the loader gives the iteration (``get_worker_info().seed - id``: one value for every worker of an
iteration, drawn anew for each) and by their worker id (a persistent worker that iterates again begins the
next epoch, which its fellows then join). Nothing is read from how or how often a loader calls the pipe.

The count lives in a small shared-memory record, made by the pipe in the process that builds it; DataLoader
workers attach to it (under ``fork`` and ``spawn``), a copy made in that same process (``copy.deepcopy``,
``DataLoader2``'s clone) counts on its own from where the original was.

A state loaded into the pipe (:class:`Resume`) gives the next iteration its epoch. One loaded in a worker
(``StatefulDataLoader`` hands each worker its own) is that worker's, for its next iteration; one loaded in the
building process is taken up by the next iteration only, by all its workers, and never again.
"""
import fcntl
import glob
import mmap
import os
import random
import tempfile
import weakref
from contextlib import contextmanager
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple

import numpy as np
from torch.utils.data import get_worker_info

__all__ = ["EpochClock", "Resume"]

_EPOCH, _TOKEN, _RESUMED, _CONSUMED = range(4)
_FIELDS = 8
#: the most DataLoader workers one iteration may have
MAX_WORKERS = 4096


class Resume(NamedTuple):
    """A loaded state's claim on an iteration: its epoch, an id (to be taken up once), and whether it was
    loaded in the process that reads it (a worker's own: taken up by that worker's next iteration)."""

    epoch: int
    id: int
    local: bool

    @classmethod
    def loaded(cls, epoch: int) -> "Resume":
        return cls(int(epoch), random.getrandbits(62) + 1, get_worker_info() is not None)


def _shared_memory_dir() -> Optional[str]:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _remove(path: str, owner_pid: int) -> None:
    """Remove the record and the files kept beside it (``path.*``: where each reader's last epoch stopped)."""
    if os.getpid() == owner_pid:
        for name in [path, *glob.glob(glob.escape(path) + ".*")]:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


class EpochClock:
    """The epoch count of one pipe (see the module docstring)."""

    def __init__(self, values: Optional[np.ndarray] = None) -> None:
        handle, self.path = tempfile.mkstemp(prefix="torchdata-s3ext-epochs-", dir=_shared_memory_dir())
        with os.fdopen(handle, "wb") as file:
            file.write(bytes(_FIELDS * 8 + MAX_WORKERS))
        self._finalizer = weakref.finalize(self, _remove, self.path, os.getpid())
        self._attach()
        if values is not None:
            self._values[:] = values

    def _attach(self) -> None:
        self._current = 0
        with open(self.path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), 0)
        self._values = np.frombuffer(self._map, dtype=np.int64, count=_FIELDS)
        self._joined = np.frombuffer(self._map, dtype=np.uint8, offset=_FIELDS * 8)

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self.path, "pid": os.getpid(), "values": np.array(self._values)}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        if state["pid"] == os.getpid() or not os.path.exists(state["path"]):  # a copy in the same process
            self.__init__(state["values"])  # type: ignore[misc]
            return
        self.path, self._finalizer = state["path"], None
        self._attach()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path, "r+b") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            yield

    def begin(self, resume: Optional[Resume] = None) -> Tuple[int, bool]:
        """Begin (or join) the iteration this process is reading: ``(its epoch, whether it goes on from
        ``resume``)``."""
        epoch, resumed = self._begin(resume)
        self._current = epoch
        return epoch, resumed

    def _begin(self, resume: Optional[Resume]) -> Tuple[int, bool]:
        worker = get_worker_info()
        token = 0 if worker is None else (worker.seed - worker.id) & 0x3FFFFFFFFFFFFFFF or 1
        if worker is not None and worker.id >= MAX_WORKERS:
            raise ValueError(f"more than {MAX_WORKERS} DataLoader workers")
        with self._locked():
            values, joined = self._values, self._joined
            if worker is not None and values[_EPOCH] > 0 and values[_TOKEN] == token and not joined[worker.id]:
                joined[worker.id] = 1  # a fellow worker of an iteration under way
                resumed = resume is not None and (resume.local or resume.id == values[_RESUMED])
                if resumed and resume.epoch != values[_EPOCH]:
                    raise RuntimeError(f"this worker's state is of epoch {resume.epoch}, its iteration's is "
                                       f"{int(values[_EPOCH])}: the workers' states are not of one checkpoint")
                return int(values[_EPOCH]), resumed
            resumed = resume is not None and (resume.local or resume.id != values[_CONSUMED])
            if resumed:
                values[_EPOCH], values[_RESUMED] = resume.epoch, resume.id  # type: ignore[union-attr]
                if not resume.local:  # type: ignore[union-attr]
                    values[_CONSUMED] = resume.id  # type: ignore[union-attr]
            else:
                values[_EPOCH] += 1
                values[_RESUMED] = 0
            values[_TOKEN] = token
            joined[:] = 0
            if worker is not None:
                joined[worker.id] = 1
            return int(values[_EPOCH]), resumed

    def next_epoch(self, resume: Optional[Resume] = None) -> int:
        """The epoch the next iteration would begin (``resume``'s, if it would be taken up)."""
        with self._locked():
            if resume is not None and (resume.local or resume.id != self._values[_CONSUMED]):
                return resume.epoch
            return int(self._values[_EPOCH]) + 1

    @property
    def epoch(self) -> int:
        """The epoch of the iteration this process is reading (0 before the first): what the stages order by."""
        return self._current

    def look_at(self, epoch: int) -> None:
        """Make ``epoch`` this process's for a look at a state (nothing is begun: another iteration's count is
        not changed)."""
        self._current = epoch
