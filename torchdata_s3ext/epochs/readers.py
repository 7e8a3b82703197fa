"""Readers: which reader this process is (a DataLoader worker of a rank), and the ``split`` stage, which gives
each reader its round-robin share of the epoch's shards.

A reader is numbered ``worker * world_size + rank`` of ``num_workers * world_size`` (consecutive shards go to
different ranks first), read where the pipe is iterated: ``torch.utils.data.get_worker_info()`` and the
initialised ``torch.distributed`` process group, if any, or the ``(rank, world_size)`` a pipe was given (ranks
of another launcher).
"""
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch.distributed as dist
from torch.utils.data import get_worker_info

from ..samples.positions import ShardSlice
from ..stage import SOURCE, Stage
from .checkpoint import CheckpointMismatch
from .merging import merged_work

__all__ = ["ReaderSplit", "check_ranks", "current_reader", "preflight_warning", "split_over_ranks"]

_over_ranks = True


def split_over_ranks(enabled: bool) -> None:
    """Whether the readers of this process split the shards over the ranks of the process group too (the
    default), or over its DataLoader workers only, every rank reading every shard (``reading_service(...,
    distributed=False)`` sets it in the processes it reads in)."""
    global _over_ranks
    _over_ranks = bool(enabled)


Ranks = Optional[Tuple[int, int]]


def check_ranks(rank: Optional[int], world_size: Optional[int]) -> Ranks:
    """``(rank, world_size)`` as given to a pipe, checked; ``None`` when neither is (the process group decides)."""
    if rank is None and world_size is None:
        return None
    if not (isinstance(rank, int) and isinstance(world_size, int) and 0 <= rank < world_size):
        raise ValueError(f"rank and world_size go together, with 0 <= rank < world_size; got rank={rank!r}, "
                         f"world_size={world_size!r}")
    return rank, world_size


def current_reader(ranks: Ranks = None) -> Tuple[int, int]:
    """``(reader, readers)``: this process's reader number and the number of readers (see the module docstring);
    ``ranks``: the ``(rank, world_size)`` given instead of the process group's."""
    worker = get_worker_info()
    worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
    rank, world_size = 0, 1
    if ranks is not None:
        rank, world_size = ranks
    elif _over_ranks and dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return worker_id * world_size + rank, workers * world_size


def preflight_warning(num_shards: int, num_readers: int) -> Optional[str]:
    """The warning for fewer shards than readers, or ``None`` when every reader gets at least one shard."""
    if num_shards >= num_readers:
        return None
    worker = get_worker_info()
    layout = "ranks x workers"
    if worker is not None and num_readers % worker.num_workers == 0:
        layout = f"{num_readers // worker.num_workers} ranks x {worker.num_workers} workers"
    return (
        f"only {num_shards} shards for {num_readers} readers ({layout}): {num_readers - num_shards} readers get "
        f"no shard and stay idle this epoch. Write at least {num_readers} shards (better: many times more, "
        "smaller ones), or use fewer DataLoader workers."
    )


class ReaderSplit(Stage[ShardSlice]):
    """The ``split`` stage: this reader's share of its source's shards (the ``order`` stage), round-robin
    over every reader: the shard at position ``p`` of the epoch's order goes to reader ``p % readers``.

    Its state says where the reader is in its share: the source's state and how many of the source's shards
    went by (``taken``), the same few numbers at a thousand shards as at a million. A state merged from
    every reader of a job (:func:`~.merging.merge_states`) says what was left of the epoch; a reader of
    the new job takes its round-robin share of that (``"merged"``, and its place in that share, ``next``)."""

    kind = "split"

    def __init__(self, source: Stage[ShardSlice], ranks: Ranks = None) -> None:
        super().__init__(source)
        self.ranks = ranks
        self.reader = (0, 1)
        self._taken = 0
        self._merged: Optional[Dict[str, Any]] = None
        self._work: List[ShardSlice] = []
        self._next = 0
        self._source_at_start: Optional[Dict[str, Any]] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self.reader = current_reader(self.ranks)
        self._merged, self._work, self._next = None, [], 0
        if state is not None and state.get("merged") is not None:
            self._take_up_merged(state)
            return
        if state is not None and tuple(state["reader"]) != self.reader:
            raise CheckpointMismatch(
                f"this state is reader {state['reader'][0]}'s of {state['reader'][1]} (ranks x DataLoader workers), "
                f"loaded into reader {self.reader[0]} of {self.reader[1]}: to resume with another number of ranks or "
                "workers, merge every reader's state with merge_states() and load that into the pipe"
            )
        self.source.reset(None if state is None else state[SOURCE])  # type: ignore[union-attr]
        self._taken = 0 if state is None else int(state["taken"])
        if state is None and self.reader[0] == 0:
            message = preflight_warning(getattr(self.source, "count", self.reader[1]), self.reader[1])
            if message:
                warnings.warn(message, stacklevel=2)

    def _take_up_merged(self, state: Dict[str, Any]) -> None:
        merged = state["merged"]
        order = self.source  # type: ignore[assignment]
        order.reset(dict(merged["order"], next=0))  # type: ignore[union-attr]
        self._source_at_start = order.state()  # type: ignore[union-attr]
        epoch_order = list(order)  # type: ignore[arg-type]
        self._merged = merged
        self._work = merged_work(merged, epoch_order)[self.reader[0]::self.reader[1]]
        self._next = int(state.get("next", 0))

    def next(self) -> ShardSlice:
        if self._merged is not None:
            if self._next >= len(self._work):
                raise StopIteration
            self._next += 1
            return self._work[self._next - 1]
        reader, readers = self.reader
        while True:
            item = self.source.next()  # type: ignore[union-attr]
            position = self._taken
            self._taken += 1
            if position % readers == reader:
                return item

    def state(self) -> Dict[str, Any]:
        if self._merged is not None:
            return {"stage": self.kind, SOURCE: self._source_at_start, "reader": list(self.reader),
                    "merged": self._merged, "next": self._next}
        return {"stage": self.kind, SOURCE: self.source.state(), "reader": list(self.reader), "taken": self._taken}  # type: ignore[union-attr]

    def state_over(self, split_state: Dict[str, Any]) -> Dict[str, Any]:
        return split_state

