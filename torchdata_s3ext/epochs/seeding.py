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
from typing import Any, Optional

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

    def set_shuffle(self, shuffle: bool = True) -> Any:
        self.shuffle = shuffle
        return self

    def set_seed(self, seed: int) -> Any:
        seed, pid = int(seed), os.getpid()
        worker_reapplying = pid != self._seeded_in_pid and seed == self._loader_seed
        if not worker_reapplying:
            self._uncounted_seedings += 1
        self._loader_seed, self._seeded_in_pid = seed, pid
        return self

    def _start_epoch(self) -> None:
        """Called at the start of every ``__iter__``, shuffling or not, so that the count never falls behind."""
        self._epoch += self._uncounted_seedings // 2 + 1
        self._uncounted_seedings = 0

    def _epoch_seed(self, role: str, reader: object) -> int:
        """This epoch's seed for ``role`` (``"shards"``, ``"samples"``) in ``reader`` (``None``: the same in all)."""
        if self.seed is not None:
            return epoch_seed(role, self.seed, self._epoch, reader)
        if self._loader_seed is not None:
            return epoch_seed(role, None, self._loader_seed, reader)
        return epoch_seed(role, random.SystemRandom().getrandbits(64), self._epoch, reader)
