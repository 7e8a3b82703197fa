"""The ``window`` stage: epochs of a fixed number of samples (``samples_per_epoch``) over a source that cycles
(a :class:`~.mixing.Mix` with ``stop="forever"``), each epoch going on where the last one stopped.

The ``N`` samples of an epoch are split over the readers: first over the ranks (rank ``r`` of ``W`` reads ``N //
W``, one more for ``r < N % W``), then a rank's share over its DataLoader workers the same way, so that a rank's
count does not depend on its number of workers. Each reader's samples are one long stream over its epochs: the
next epoch goes on from the sample after its last, and every source goes through all its samples once before any
comes again.

Where the next epoch is read by a new process (a ``DataLoader`` worker, made anew each epoch), it takes up where
the reader of the same number stopped from a small file beside the pipe's epoch count (the reader's state at its
epoch's end). A state taken at an epoch's end is the next epoch's start: a checkpoint goes on from there too.
"""
import os
import pickle
import warnings
from typing import Any, Dict, Optional, Tuple

import torch.distributed as dist
from torch.utils.data import get_worker_info

from ..stage import SOURCE, Stage
from .clock import EpochClock
from .readers import Ranks

__all__ = ["EpochWindow", "check_samples_per_epoch", "rank_share", "share_of"]


def check_samples_per_epoch(samples_per_epoch: Any) -> Optional[int]:
    """``samples_per_epoch`` checked: ``None`` or a positive int."""
    if samples_per_epoch is None:
        return None
    if isinstance(samples_per_epoch, bool) or not isinstance(samples_per_epoch, int) or samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be a positive int or None, got {samples_per_epoch!r}")
    return samples_per_epoch


def share_of(count: int, part: int, parts: int) -> int:
    """Part ``part``'s share of ``count`` split over ``parts`` as evenly as can be (the first ones one more)."""
    return count // parts + (1 if part < count % parts else 0)


def _rank(ranks: Ranks) -> Tuple[int, int]:
    if ranks is not None:
        return ranks
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_share(samples_per_epoch: int, ranks: Ranks = None) -> int:
    """This rank's samples of each epoch."""
    return share_of(samples_per_epoch, *_rank(ranks))


class EpochWindow(Stage[Any]):
    """The ``window`` stage (see the module docstring): ``samples_per_epoch`` samples an epoch, over every reader."""

    kind = "window"

    def __init__(self, source: Stage[Any], samples_per_epoch: int, clock: EpochClock, ranks: Ranks = None) -> None:
        super().__init__(source)
        self.samples_per_epoch, self.clock, self.ranks = samples_per_epoch, clock, ranks
        self.epoch = 0
        self._share = 0
        self._taken = 0
        self._begun = False
        self._handed_over = False  # where this epoch stopped is kept, and nothing was read since
        self._reader = (0, 1)

    def _reader_share(self) -> Tuple[Tuple[int, int], int]:
        """``((reader, readers), this reader's share of an epoch)``."""
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        rank, world_size = _rank(self.ranks)
        share = share_of(share_of(self.samples_per_epoch, rank, world_size), worker_id, workers)
        return (worker_id * world_size + rank, workers * world_size), share

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._reader, self._share = self._reader_share()
        self._handed_over = False
        if state is not None:
            self.epoch, self._taken = int(state["epoch"]), int(state["taken"])
            self.source.reset(state[SOURCE])  # type: ignore[union-attr]
        else:
            self.epoch, self._taken = self.clock.epoch, 0
            self.source.reset(self._where_the_last_epoch_stopped())  # type: ignore[union-attr]
        self._begun = True

    def _where_the_last_epoch_stopped(self) -> Optional[Dict[str, Any]]:
        """The source's state at the end of this reader's last epoch: kept in this process, or handed over by the
        process that read it; ``None`` before the first epoch."""
        if self.epoch <= 1:
            return None
        handed = _read_handover(self._handover_path())
        if handed is not None and handed[0] < self.epoch:
            if handed[0] != self.epoch - 1:
                warnings.warn(f"reader {self._reader[0]} of {self._reader[1]} goes on where it stopped in epoch "
                              f"{handed[0]}: epochs {handed[0] + 1}..{self.epoch - 1} were not read by it", stacklevel=3)
            return handed[1]
        warnings.warn(
            f"samples_per_epoch: reader {self._reader[0]} of {self._reader[1]} does not know where its last epoch "
            "stopped (another number of DataLoader workers or ranks than then?): it starts its sources again, and "
            "samples may come again before every sample has come once", stacklevel=3)
        return None

    def _handover_path(self) -> str:
        return f"{self.clock.path}.window-{self._reader[0]}-of-{self._reader[1]}"

    def next(self) -> Any:
        if self._taken >= self._share:
            self._hand_over()
            raise StopIteration
        try:
            item = self.source.next()  # type: ignore[union-attr]
        except StopIteration:  # every source has nothing for this reader
            self._hand_over()
            raise
        self._taken += 1
        self._handed_over = False
        return item

    def _hand_over(self) -> None:
        """Keep where this epoch stopped for the next one, read by whichever process reads it."""
        if not self._handed_over:
            _write_handover(self._handover_path(), self.epoch, self.source.state())  # type: ignore[union-attr]
            self._handed_over = True

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, SOURCE: self.source.state(), "epoch": self.epoch, "taken": self._taken}  # type: ignore[union-attr]

    def close(self) -> None:
        if self._begun and self._taken:
            try:
                self._hand_over()  # an epoch left early goes on from where it stopped
            except Exception:  # noqa: BLE001  (closing must not fail over a state that cannot be taken)
                pass
        super().close()


def _write_handover(path: str, epoch: int, state: Dict[str, Any]) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        pickle.dump((epoch, state), file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def _read_handover(path: str) -> Optional[Tuple[int, Dict[str, Any]]]:
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except FileNotFoundError:
        return None
