"""The ``shuffle`` stage: a seeded shuffle buffer over a reader's samples, and what a checkpoint keeps of it.

Its state holds the buffer as positions (each sample's shard, number and bytes: no sample bytes), the number
of random draws made, and its source's state after the last sample taken. Taken up, it reads the buffered
samples again into their slots (nearby ones in one ranged read) and draws on from the same number: the order
goes on as if nothing had happened.
"""
import array
from typing import Any, Dict, List, Optional

from ..samples.positions import CODE_WIDTH, Position, positions_from_codes
from ..stage import SOURCE, Stage, StateUnavailable
from .checkpoint import CheckpointMismatch
from .merging import refetch_slices
from .clock import EpochClock
from .readers import Ranks, current_reader
from .seeds import Draws, epoch_seed

__all__ = ["SampleShuffler"]

_WIDTH = CODE_WIDTH
_UNTRACKED = (
    "the samples reaching shuffle_samples() do not say where they lie; checkpoints need the shards read by "
    "open_s3() and load_from_tar().group_wds_samples() (or load_wds_shards()) straight into shuffle_samples()"
)


class SampleShuffler(Stage[Any]):
    """The ``shuffle`` stage (see the module docstring): ``buffer_size`` samples held (``1``: none, the order
    kept), drawn from with a stream of random numbers seeded by the pipe's seed, the epoch and the reader."""

    kind = "shuffle"

    def __init__(self, source: Stage[Any], buffer_size: int, seed: int, shuffle: bool, clock: EpochClock,
                 seed_chosen: bool = True, ranks: Ranks = None) -> None:
        super().__init__(source)
        self.ranks = ranks
        self.size = buffer_size if shuffle else 1
        self.seed = seed
        self.seed_chosen = seed_chosen
        self.clock = clock
        self.epoch = 0
        self._clear()

    def _clear(self) -> None:
        self._buffer: List[Any] = []
        self._codes = array.array("q")
        self._urls: List[Optional[str]] = []
        self._url_numbers: Dict[str, int] = {}
        self._url_uses: List[int] = []
        self._free: List[int] = []
        self._draining = False
        self._untracked = False
        self._draws: Optional[Draws] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._clear()
        if state is not None and state.get("unavailable"):
            raise StateUnavailable(f"this pipe cannot be checkpointed: {state['unavailable']}")
        super().reset(state)
        if state is not None and state.get("epoch") is not None:
            self._check_seed(state["seed"])
            self.epoch = int(state["epoch"])
        else:
            self.epoch = self.clock.epoch
        self._draws = Draws(epoch_seed("samples", self.seed, self.epoch, current_reader(self.ranks)), self.size,
                            0 if state is None else int(state.get("draws", 0)))
        if state is not None and state.get("buffer"):
            self._refill(state)
        self._draining = state is not None and bool(state.get("draining"))

    def _check_seed(self, seed: int) -> None:
        if seed != self.seed:
            if self.seed_chosen:
                raise CheckpointMismatch(f"the checkpoint was taken with seed={seed!r}, this pipe has seed={self.seed!r}")
            self.seed = seed

    def next(self) -> Any:
        if self.size <= 1:
            sample = self.source.next()  # type: ignore[union-attr]
            self._untracked = self._untracked or getattr(sample, "position", None) is None
            return sample
        if not self._draining:
            while True:
                try:
                    sample = self.source.next()  # type: ignore[union-attr]
                except StopIteration:
                    self._drain()
                    break
                if len(self._buffer) < self.size:
                    self._buffer.append(None)
                    self._codes.extend((-1,) * _WIDTH)
                    self._put(len(self._buffer) - 1, sample)
                    continue
                slot = self._draws.next()  # type: ignore[union-attr]
                taken = self._buffer[slot]
                self._put(slot, sample)
                return taken
        if not self._buffer:
            raise StopIteration
        number = self._codes[-_WIDTH]
        del self._codes[-_WIDTH:]
        self._forget_url(number)
        return self._buffer.pop()

    def _put(self, slot: int, sample: Any) -> None:
        position: Optional[Position] = getattr(sample, "position", None)
        old = self._codes[slot * _WIDTH]
        if old >= 0:
            self._forget_url(old)
        self._buffer[slot] = sample
        if position is None:
            self._untracked = True
            self._codes[slot * _WIDTH:(slot + 1) * _WIDTH] = array.array("q", (-1,) * _WIDTH)
            return
        start = -1 if position.start is None else position.start
        end = -1 if position.end is None else position.end
        self._codes[slot * _WIDTH:(slot + 1) * _WIDTH] = array.array("q", (self._url_number(position.url), position.index, start, end))

    def _url_number(self, url: str) -> int:
        """The number of ``url`` in the table of the buffer's shards (one more sample of it held)."""
        number = self._url_numbers.get(url)
        if number is None:
            if self._free:
                number = self._free.pop()
                self._urls[number] = url
            else:
                number = len(self._urls)
                self._urls.append(url)
                self._url_uses.append(0)
            self._url_numbers[url] = number
        self._url_uses[number] += 1
        return number

    def _forget_url(self, number: int) -> None:
        """One sample less of shard ``number`` held; its entry is free once none is."""
        if number < 0:
            return
        self._url_uses[number] -= 1
        if not self._url_uses[number]:
            del self._url_numbers[self._urls[number]]  # type: ignore[arg-type]
            self._urls[number] = None
            self._free.append(number)

    def _drain(self) -> None:
        """The source has ended: the buffer is emptied in an order drawn from the seed."""
        order = self._draws.permutation(len(self._buffer))  # type: ignore[union-attr]
        self._buffer = [self._buffer[slot] for slot in order]
        codes = self._codes
        self._codes = array.array("q")
        for slot in order:
            self._codes.extend(codes[slot * _WIDTH:(slot + 1) * _WIDTH])
        self._draining = True

    def state(self) -> Dict[str, Any]:
        if self._untracked:
            return {"stage": self.kind, "unavailable": _UNTRACKED}
        return {
            "stage": self.kind, SOURCE: self.source.state(), "epoch": self.epoch, "seed": self.seed,  # type: ignore[union-attr]
            "draws": self._draws.draws if self._draws is not None else 0, "draining": self._draining,
            "urls": list(self._urls), "buffer": self._codes.tobytes(),
        }

    def _refill(self, state: Dict[str, Any]) -> None:
        """Fill the buffer back with the samples ``state`` held, read again, slot for slot."""
        positions = buffered_positions(state)
        slots = {(position.url, position.index): slot for slot, position in enumerate(positions)}
        self._buffer = [None] * len(positions)
        reading = self.source.reading_of(refetch_slices(positions))  # type: ignore[union-attr]
        try:
            reading.reset(None)
            for sample in reading:
                position = sample.position
                slot = slots.pop((position.url, position.index), None)
                if slot is not None:
                    self._buffer[slot] = sample
        finally:
            reading.close()
        if slots:
            raise CheckpointMismatch(
                f"the samples the checkpoint had buffered were not found again (missing: {sorted(slots)[:3]}): the "
                "shards changed since the checkpoint was taken"
            )
        for slot, sample in enumerate(self._buffer):
            self._codes.extend((-1,) * _WIDTH)
            self._put(slot, sample)
        self._draining = bool(state["draining"])


def buffered_positions(state: Dict[str, Any]) -> List[Position]:
    """The positions a ``shuffle`` stage's state holds, slot for slot."""
    return positions_from_codes(state["buffer"], state["urls"])
