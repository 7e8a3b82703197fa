"""Equal counts on every rank: :class:`RankEqualizer` drops or repeats items so that all ranks yield as many
each epoch, agreeing through one small ``all_reduce`` per window."""
import logging
from collections import deque
from itertools import islice
from typing import Any, Deque, Iterable, Iterator, List, Optional, Tuple, TypeVar

import torch
import torch.distributed as dist

__all__ = ["EQUALIZE_MODES", "RankEqualizer", "check_equalize_mode"]

logger = logging.getLogger("torchdata_s3ext")

T = TypeVar("T")

#: what ``equalize=`` accepts besides ``None``
EQUALIZE_MODES = ("drop", "pad")


def check_equalize_mode(mode: object) -> None:
    """Raises ``ValueError`` unless ``mode`` is one of :data:`EQUALIZE_MODES`."""
    if mode not in EQUALIZE_MODES:
        raise ValueError(f"equalize must be one of {EQUALIZE_MODES} or None, got {mode!r}")


class RankEqualizer(Iterable[T]):
    """Wraps one rank's samples so that every rank yields the same number each epoch: ``"drop"`` ends the
    epoch everywhere when the first rank runs out, ``"pad"`` repeats recent samples on ranks that ran out until
    the last one is done. Ranks agree every ``window`` samples (one small ``all_reduce``).

    After each epoch, ``samples_dropped`` / ``samples_repeated`` say what this rank dropped or repeated (also
    logged as a warning on logger ``torchdata_s3ext``). Dropping still reads the dropped samples, to count them.
    It counts what the loader yields: samples, or batches when the pipe batches (equal steps is what DDP needs).
    Use it around a plain ``DataLoader``'s iterable; :class:`ExactlyOnceReadingService` uses it for ``equalize=``.

    Example:
        >>> for sample in RankEqualizer(loader, "drop"):  # doctest: +SKIP
        ...     train_step(sample)
    """

    def __init__(self, samples: Iterable[T], mode: str, group: Optional[Any] = None, window: int = 16) -> None:
        check_equalize_mode(mode)
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self.samples = samples
        self.mode = mode
        self.group = group
        self.window = window
        self.samples_dropped = 0
        self.samples_repeated = 0

    def _agree(self, have: int, can_repeat: bool) -> Tuple[int, int, bool]:
        """(fewest, most, every rank can repeat) over the ranks, for this round."""
        stats = torch.tensor([have, -have, int(can_repeat)], dtype=torch.int64)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats, op=dist.ReduceOp.MIN, group=self.group)
        return int(stats[0]), -int(stats[1]), bool(stats[2])

    def __iter__(self) -> Iterator[T]:
        if self.group is None and dist.is_available() and dist.is_initialized():
            # Counts are CPU tensors: agree over gloo even when training uses NCCL. Every rank gets here.
            self.group = dist.new_group(backend="gloo")
        self.samples_dropped = self.samples_repeated = 0
        samples = iter(self.samples)
        recent: Deque[T] = deque(maxlen=self.window)
        yielded = 0
        while True:
            buffer = list(islice(samples, self.window))
            fewest, most, all_can_repeat = self._agree(len(buffer), bool(buffer or recent))
            if self.mode == "drop":
                yield from buffer[:fewest]
                yielded += fewest
                if fewest < self.window:
                    self.samples_dropped = len(buffer) - fewest + sum(1 for _ in samples)
                    break
                continue
            # Decided from the agreed numbers only, so that every rank raises together instead of one waiting.
            if most > 0 and not all_can_repeat:
                raise RuntimeError(
                    "equalize='pad' needs at least one sample on every rank to repeat, but a rank has none "
                    "(fewer shards than ranks?); write more shards or use equalize='drop'"
                )
            yield from buffer
            recent.extend(buffer)
            repeats = list(islice(_cycle(list(recent)), most - len(buffer)))
            yield from repeats
            self.samples_repeated += len(repeats)
            yielded += most
            if most < self.window:
                break
        if self.samples_dropped or self.samples_repeated:
            done = "dropped" if self.mode == "drop" else "repeated"
            logger.warning(
                "equalize=%r: this rank %s %d items (samples, or batches if the pipe batches) this epoch so that "
                "every rank yields %d",
                self.mode, done, self.samples_dropped or self.samples_repeated, yielded,
            )


def _cycle(items: List[T]) -> Iterator[T]:
    while items:
        yield from items
