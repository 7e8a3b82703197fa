"""The ``order`` stage: the listed shards in the epoch's order, a new seeded permutation each epoch, the same
in every reader and rank (so that the ``split`` stage splits one permutation)."""
import hashlib
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..samples.positions import ShardSlice
from ..stage import Stage
from .checkpoint import CheckpointMismatch
from .clock import EpochClock
from .seeds import epoch_seed

__all__ = ["ShardOrder", "check_order_state", "shards_digest"]


def shards_digest(shard_urls: Iterable[str]) -> str:
    """A digest of the list of shard URLs, in their listed order."""
    digest = hashlib.sha256()
    for url in shard_urls:
        digest.update(str(url).encode() + b"\0")
    return digest.hexdigest()[:16]


def epoch_order(count: int, seed: int, epoch: int, shuffle: bool) -> Sequence[int]:
    """The epoch's order of ``count`` shards: their numbers, permuted from ``seed`` and ``epoch`` alone."""
    if not shuffle:
        return range(count)
    return np.random.default_rng(epoch_seed("shards", seed, epoch)).permutation(count).tolist()


def check_order_state(state: Dict[str, Any], seed: int, seed_chosen: bool, shards: Sequence[Any],
                      digest: Optional[str] = None) -> None:
    """``CheckpointMismatch`` unless an ``order`` stage's ``state`` fits a pipe with ``seed`` (unless drawn, not
    ``seed_chosen``: then the state's goes on) over ``shards`` (whose ``digest`` may be given)."""
    if state["seed"] != seed and seed_chosen:
        raise CheckpointMismatch(f"the checkpoint was taken with seed={state['seed']!r}, this pipe has seed={seed!r}")
    listed = [len(shards), digest if digest is not None else shards_digest(shards)]
    if listed != list(state["shards"]):
        raise CheckpointMismatch(
            f"the checkpoint was taken over {state['shards'][0]} shards (digest {state['shards'][1]}), this pipe "
            f"lists {listed[0]} (digest {listed[1]}): other shards, or shards added or removed since"
        )


class ShardOrder(Stage[ShardSlice]):
    """The ``order`` stage over a list of shard URLs (or any iterable of them, read whole each epoch): each
    shard as a :class:`~torchdata_s3ext.samples.positions.ShardSlice` that knows its number in the list (items
    that are not strings pass as they are).

    Its state is the epoch, the seed, the list's length and digest (a state of other shards is refused with
    :class:`~.checkpoint.CheckpointMismatch`) and the position reached: a few numbers, whatever the list's
    length. ``seed`` is the pipe's (drawn once when ``None`` was asked for: a state then brings its own)."""

    kind = "order"

    def __init__(self, shards: Iterable[str], seed: int, shuffle: bool, clock: EpochClock, seed_chosen: bool = True) -> None:
        super().__init__(None)
        self.shards = shards
        self.seed = seed
        self.seed_chosen = seed_chosen
        self.shuffle = shuffle
        self.clock = clock
        self.epoch = 0
        self.count = 0
        self._items: List[Any] = []
        self._listed: Optional[Any] = None
        self._digest = ""
        self._order: Sequence[int] = ()
        self._next = 0

    def _list(self) -> None:
        if self._listed is not self.shards or not isinstance(self.shards, (list, tuple)):
            self._items = list(self.shards)
            self._digest = shards_digest(self._items)
            self._listed = self.shards
        self.count = len(self._items)

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._list()
        if state is None:
            self.epoch, self._next = self.clock.epoch, 0
        else:
            if "seed" in state:  # (a state merged from readers that had not begun knows no more than the epoch)
                self._check(state)
            self.epoch, self._next = int(state["epoch"]), int(state["next"])
        self._order = epoch_order(self.count, self.seed, self.epoch, self.shuffle)

    def _check(self, state: Dict[str, Any]) -> None:
        check_order_state(state, self.seed, self.seed_chosen, self._items, self._digest)
        self.seed = state["seed"]  # the same, or, for a pipe made with seed=None, the checkpoint's goes on

    def next(self) -> ShardSlice:
        if self._next >= len(self._order):
            raise StopIteration
        number = self._order[self._next]
        self._next += 1
        item = self._items[number]
        return ShardSlice(item, number) if isinstance(item, str) else item  # anything else passes as it is

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, "epoch": self.epoch, "seed": self.seed, "shards": [self.count, self._digest],
                "next": self._next}
