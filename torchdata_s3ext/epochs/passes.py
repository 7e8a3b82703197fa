"""One pass of ``shuffle_samples`` over a reader's samples, and what it has delivered: the reader's checkpoint.

:class:`ShufflePass` runs the shuffle buffer and keeps, between two samples, all a checkpoint needs: the
buffer (each sample knows its position), its random state, and the position of the last sample taken from
upstream, from which the shard being read goes on (its next member header) before the shards not yet opened.
Restored from its own reader's state, it reads the buffered samples again into their slots and takes up the
random state, so the order goes on as if nothing had happened.
"""
import random
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torchdata.datapipes.iter import IterDataPipe

from ..samples.positions import Position
from .checkpoint import CheckpointMismatch, decode_positions, reader_state, refetch_slices, unavailable_state

__all__ = ["ShufflePass"]


def _position(sample: Any) -> Optional[Position]:
    return getattr(sample, "position", None)


class ShufflePass:
    """A shuffle buffer of ``buffer_size`` over ``source`` (``1``: no buffer), drawing from ``rng``."""

    def __init__(self, source: IterDataPipe, sharding: Any, rng: Optional[random.Random], buffer_size: int) -> None:
        self.source = source
        self.sharding = sharding
        self.rng = rng
        self.size = buffer_size
        self.buffer: List[Any] = []
        #: the buffer's positions, coded as a checkpoint keeps them, slot for slot (kept up as samples come)
        self._codes: List[Tuple[int, int, Optional[int], Optional[int]]] = []
        self._shard_numbers: Dict[str, int] = {}
        self.draining = False
        self.upstream_done = False
        self.finished = False
        self.started = False  # a sample was taken from upstream, or the buffer was restored
        self.last: Optional[Position] = None
        self.untracked = False
        self._first_open = 0  # items before it are done (the refetched ones of a restored pass)
        self._restore: Optional[Dict[str, Any]] = None

    @property
    def shards(self) -> Optional[Tuple[int, str]]:
        return getattr(self.sharding, "epoch_shards", None)

    def restore(self, state: Dict[str, Any]) -> None:
        """Fill the buffer back from the first items of the pass (the samples ``state`` had buffered, read
        again) and take up its random state, before going on."""
        self._restore = state

    def _refill(self, upstream: Iterator[Any]) -> None:
        state, self._restore = self._restore, None
        assert state is not None
        positions = decode_positions(state["buffer"])
        slots = {(position.shard, position.index): slot for slot, position in enumerate(positions)}
        refetched = len(refetch_slices(positions))
        self.buffer = [None] * len(positions)
        for _ in range(len(positions)):
            sample = next(upstream, None)
            position = _position(sample)
            slot = slots.pop((position.shard, position.index), None) if position is not None else None
            if slot is None or position is None or position.item is None or position.item >= refetched:
                missing = sorted(slots)[:3]
                raise CheckpointMismatch(
                    f"the samples the checkpoint had buffered were not found again (missing: {missing}): the shards "
                    "changed since the checkpoint was taken"
                )
            self.buffer[slot] = sample
        self._codes = [self._code(position) for position in positions]
        self._first_open = refetched
        self.started = True
        if self.rng is not None and state["rng"] is not None:
            self.rng.setstate(_as_rng_state(state["rng"]))
        self.draining = state["draining"]

    def _took(self, sample: Any) -> Any:
        """Note ``sample``, just taken from upstream; its position, coded."""
        position = _position(sample)
        self.untracked = self.untracked or position is None or position.item is None
        self.last = position
        self.started = True
        return None if self.untracked else self._code(position)  # type: ignore[arg-type]

    def _code(self, position: Position) -> Tuple[int, int, Optional[int], Optional[int]]:
        number = self._shard_numbers.setdefault(position.shard, len(self._shard_numbers))
        return number, position.index, position.start, position.end

    def samples(self) -> Iterator[Any]:
        upstream = iter(self.source)
        if self._restore is not None:
            self._refill(upstream)
        buffer, codes = self.buffer, self._codes
        if not self.draining:
            for sample in upstream:
                code = self._took(sample)
                if self.size == 1:
                    yield sample
                    continue
                if len(buffer) < self.size:
                    buffer.append(sample)
                    codes.append(code)
                    continue
                index = self.rng.randrange(self.size)  # type: ignore[union-attr]
                sample, buffer[index] = buffer[index], sample  # the buffer is whole whenever a sample is out
                codes[index] = code
                yield sample
            self.upstream_done = self.draining = True
            if self.rng is not None:
                order = list(range(len(buffer)))
                self.rng.shuffle(order)
                buffer[:] = [buffer[slot] for slot in order]
                codes[:] = [codes[slot] for slot in order]
        else:
            for sample in upstream:  # nothing is left upstream of a buffer restored while it emptied
                raise CheckpointMismatch(f"a sample the checkpoint did not expect: {_position(sample)}")
        self.upstream_done = True
        while buffer:
            codes.pop()
            yield buffer.pop()
        self.finished = True

    def state(self, seeding: Dict[str, Any], reader: Tuple[int, int]) -> Dict[str, Any]:
        """This reader's checkpoint state now (between two samples)."""
        if not self.started:
            return self.state_before(seeding, self.shards or (0, ""), reader)
        if self.untracked or self.sharding is None:
            # Not raised: StatefulDataLoader asks every step, whether or not the job ever resumes.
            return unavailable_state(
                "the samples reaching shuffle_samples() do not say where they lie; checkpoints need "
                "shard_across_readers() -> open_s3() -> load_from_tar().group_wds_samples() (or load_wds_shards()) "
                "-> shuffle_samples(), with no pipe between the samples and shuffle_samples()"
            )
        items = self.sharding.items
        if self.upstream_done:
            remaining = []
        elif self.last is None:
            remaining = items[self._first_open:]
        else:
            rest = items[self.last.item].after(self.last)
            remaining = ([rest] if rest is not None else []) + items[self.last.item + 1:]
        state = reader_state(
            status="running", shards=self.shards, reader=reader, remaining=remaining, draining=self.draining,
            rng=self.rng.getstate() if self.rng is not None else None, **seeding,
        )
        state["buffer"] = {"shards": list(self._shard_numbers), "samples": list(self._codes)}
        return state

    @staticmethod
    def state_before(seeding: Dict[str, Any], shards: Tuple[int, str], reader: Tuple[int, int]) -> Dict[str, Any]:
        """The state of a reader that has delivered nothing of epoch ``seeding["epoch"]`` (and all before it)."""
        return reader_state(status="before", shards=shards, reader=reader, **seeding)


def _as_rng_state(state: Any) -> Tuple[Any, ...]:
    """A ``random.Random`` state back from a checkpoint (lists where it was saved as JSON-like data)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
