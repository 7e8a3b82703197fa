"""Per-epoch seeds: :func:`epoch_seed`, and :class:`EpochSeeded`, the one place where the shufflers keep their
seed and count their epochs.

How epochs are counted, so that epoch ``k`` has the same number in the process that iterates the pipe, whatever
loader runs it. An epoch starts at ``__iter__``; the loaders' ``set_seed`` calls before it are counted, because
in torch's multi-worker ``DataLoader`` the pipe that is iterated is a worker's copy of the main process's pipe,
and the main process's copy is never iterated: the count reaches the workers inside the copy.

- No loader, ``DataLoader2`` without a reading service: no ``set_seed``; each ``__iter__`` is the next epoch.
- ``DataLoader(num_workers=0)``, ``DataLoader2``'s in-process service: one ``set_seed``, then ``__iter__``.
- ``DataLoader(num_workers=N)``: each new iterator seeds the main copy twice (``_BaseDataLoaderIter.__init__``
  before the workers copy the pipe, then ``_reset(first_iter=True)``, whose seed no worker sees); each worker
  then re-applies the seed its copy was made with (the same value, in another process: not counted). A copy
  made in epoch ``k`` has seen ``2k - 1`` calls, so ``n`` uncounted calls start ``n // 2 + 1`` epochs. With
  ``persistent_workers``, later epochs are one ``set_seed`` in the worker (``_ResumeIteration``), then ``__iter__``.

``tests/epochs/test_seeding.py`` pins this pattern of torch's, and ``tests/e2e/test_pipe_seed.py`` checks that
epoch ``k``'s shard order is the same under every loader.
"""
import hashlib
import os
import random
from typing import Any, Dict, Optional

from torch.utils.data import get_worker_info

from ..s3.tally import SharedTally

__all__ = ["EpochSeeded", "epoch_seed"]


def epoch_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts, identical in every process (unlike ``hash()``).

    Example:
        >>> epoch_seed("shards", 0, 1, None) == epoch_seed("shards", 0, 1, None) != epoch_seed("shards", 0, 2, None)
        True
    """
    material = "|".join(map(repr, parts)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little")


class EpochSeeded:
    """Seeding shared by the two shufflers, and their epoch count (the state a checkpoint would keep).

    With ``seed`` set, epoch ``k``'s order comes from ``seed``, ``k`` and the reader alone: the same in every run,
    rank and loader, whatever seed the loader passes to ``set_seed``. With ``seed=None``, the loader's per-epoch
    seed decides (``DataLoader(generator=...)``, ``DataLoader2.seed(n)``; rank 0's in a process group), and
    without a loader every epoch is drawn at random.
    """

    seed: Optional[int]
    shuffle: bool

    def _init_seeding(self, seed: Optional[int], shuffle: bool) -> None:
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        self.seed = seed
        self.shuffle = shuffle
        #: the epoch under way (1 for the first), or 0 before the first
        self._epoch = 0
        #: ``set_seed`` calls not yet turned into epochs (see the module docstring)
        self._uncounted_seedings = 0
        self._loader_seed: Optional[int] = None
        self._seeded_in_pid: Optional[int] = None
        #: a checkpoint state to go on from, and the epoch it is of (see :meth:`_load_epoch`)
        self._resume: Optional[Dict[str, Any]] = None
        self._resume_epoch: Optional[int] = None
        #: the state the epoch under way goes on from, or ``None`` for an epoch from its start
        self._resuming: Optional[Dict[str, Any]] = None
        #: epochs to add to the count of copies made by the main process, shared with its DataLoader workers:
        #: a worker that loads a checkpoint of epoch ``e`` tells the copies of later epochs (see _load_epoch)
        self._epoch_shift = SharedTally(["epochs"])
        self._shifted = False
        self._uncounted_at_copy = 0

    def set_shuffle(self, shuffle: bool = True) -> Any:
        self.shuffle = shuffle
        return self

    def set_seed(self, seed: int) -> Any:
        seed, pid = int(seed), os.getpid()
        if pid != self._seeded_in_pid:
            self._uncounted_at_copy = self._uncounted_seedings  # what this process's copy brought along
        worker_reapplying = pid != self._seeded_in_pid and seed == self._loader_seed
        if not worker_reapplying:
            self._uncounted_seedings += 1
        self._loader_seed, self._seeded_in_pid = seed, pid
        return self

    def _start_epoch(self) -> None:
        """Called at the start of every ``__iter__``, shuffling or not, so that the count never falls behind."""
        self._epoch += self._uncounted_seedings // 2 + 1
        self._uncounted_seedings = 0
        if not self._shifted:
            self._shifted = True
            self._epoch += self._epoch_shift.totals()["epochs"]
        self._resuming = self._resume if self._epoch == self._resume_epoch else None
        if self._resuming is not None and self.seed is None:
            self._loader_seed = self._resuming["loader_seed"]  # the order the epoch was begun in

    def _next_epoch(self) -> int:
        """The epoch the next ``__iter__`` of this object (or of a copy of it made now) starts."""
        shift = 0 if self._shifted else self._epoch_shift.totals()["epochs"]
        return self._epoch + self._uncounted_seedings // 2 + 1 + shift

    def _load_epoch(self, state: Dict[str, Any]) -> None:
        """Make the next epoch started here, or in a copy made from here (a DataLoader worker's), the epoch
        of checkpoint ``state``, going on from it; the epochs after it are counted on from there.

        In a DataLoader worker (``StatefulDataLoader`` loads each worker's state into its copy of the pipe), the
        main process's copy still counts the epochs it has seen in this process: worker 0 adds the difference
        to the shared shift once, so that the copies of the following epochs are numbered on from ``state``'s.
        """
        worker = get_worker_info()
        if worker is not None and worker.id == 0 and not self._shifted:
            # The epoch the main process's count gives this copy (a worker re-seeding its copy with another
            # seed, as StatefulDataLoader's resumed workers do, is not the main process's count).
            counted = self._epoch + self._uncounted_at_copy // 2 + 1 + self._epoch_shift.totals()["epochs"]
            self._epoch_shift.add({"epochs": state["epoch"] - counted})
        self._shifted = True
        self._epoch, self._uncounted_seedings = state["epoch"] - 1, 0
        self._resume, self._resume_epoch = state, state["epoch"]

    def _epoch_seed(self, role: str, reader: object) -> int:
        """This epoch's seed for ``role`` (``"shards"``, ``"samples"``) in ``reader`` (``None``: the same in all)."""
        if self.seed is not None:
            return epoch_seed(role, self.seed, self._epoch, reader)
        if self._loader_seed is not None:
            return epoch_seed(role, None, self._loader_seed, reader)
        return epoch_seed(role, random.SystemRandom().getrandbits(64), self._epoch, reader)
