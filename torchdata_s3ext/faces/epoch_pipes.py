"""The pipes of epochs: ``shuffle_shards`` (the epoch's shard order), ``shard_across_readers`` (this reader's
share of it) and ``shuffle_samples`` (a seeded shuffle buffer)."""
from typing import Any, Optional

from ..epochs.clock import EpochClock
from ..epochs.order import ShardOrder
from ..epochs.readers import ReaderSplit, check_ranks
from ..epochs.seeds import pipe_seed
from ..epochs.shuffling import SampleShuffler
from ..stage import Stage
from .datapipes import Pipe, functional

__all__ = ["ReaderShardingIterDataPipe", "SampleShufflerIterDataPipe", "ShardShufflerIterDataPipe"]

_SEED = """an int makes epoch ``k``'s order a function of ``seed``, ``k`` (and the reader) alone: the same in
            every run, under any loader (``DataLoader`` with any ``num_workers``, ``fork`` or ``spawn``,
            ``StatefulDataLoader``, ``DataLoader2``, ``torchdata.nodes``) or none. ``None``: a seed drawn when
            the pipe is made (rank 0's in an initialised process group, which every rank must then build the
            pipe in), so that runs differ; a checkpoint carries it"""


@functional("shuffle_shards")
class ShardShufflerIterDataPipe(Pipe):
    r"""
    Takes shard URLs and yields them in a new seeded order each epoch, the same order in every worker and
    rank, so that ``shard_across_readers`` after it splits one permutation (functional name:
    ``shuffle_shards``).

    Args:
        source_datapipe: shard URLs (a list, or any iterable: it is read whole each epoch)
        seed: SEED
        shuffle: ``False`` keeps the given order

    Note:
        Epochs are counted by the pipe that is iterated, from 1: each iteration is its next epoch, the same
        number in every DataLoader worker of that iteration; a new pipe starts again at epoch 1.

    Example:
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> urls = IterableWrapper(["a.tar", "b.tar", "c.tar"]).shuffle_shards(seed=0)
        >>> sorted(urls) == ["a.tar", "b.tar", "c.tar"]
        True
    """

    def __init__(self, source_datapipe: Any, seed: Optional[int] = None, shuffle: bool = True) -> None:
        super().__init__(source_datapipe)
        self.seed, self.seed_chosen = pipe_seed(seed)
        self.shuffle = bool(shuffle)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return ShardOrder(self.source_datapipe, self.seed, self.shuffle, clock, self.seed_chosen)

    def __len__(self) -> int:
        return len(self.source_datapipe)


@functional("shard_across_readers")
class ReaderShardingIterDataPipe(Pipe):
    r"""
    Takes shard URLs and yields this reader's share, round-robin over all readers (ranks x DataLoader workers),
    warning when there are fewer shards than readers (functional name: ``shard_across_readers``).

    The reader is found where the pipe is iterated: the DataLoader worker (``get_worker_info()``) and the rank
    of an initialised ``torch.distributed`` group; reader ``worker * world_size + rank`` takes the shards at
    positions ``reader, reader + readers, ...`` of the epoch's order. Without ``shuffle_shards`` before it, the
    order is the list's.

    The URLs it yields are :class:`~torchdata_s3ext.samples.positions.ShardSlice` strings that know their number
    in the list, so that a checkpoint says where the reader is in its share in a few numbers; a reader resumed
    from a state merged from another job's readers takes its share of what that job had left.

    Args:
        source_datapipe: shard URLs, the same list in the same order in every reader (``shuffle_shards()``)
        rank, world_size: this process's rank and the number of ranks, when another launcher than
            ``torch.distributed`` runs them (default: the initialised process group's, if any)

    Example:
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> share = IterableWrapper(["a.tar", "b.tar", "c.tar"]).shard_across_readers()
        >>> list(share)  # one reader, outside any DataLoader worker or process group
        ['a.tar', 'b.tar', 'c.tar']
    """

    def __init__(self, source_datapipe: Any, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        super().__init__(source_datapipe)
        self.ranks = check_ranks(rank, world_size)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        source = self.source_datapipe
        if isinstance(source, ShardShufflerIterDataPipe):
            order = source._stage(clock)
        else:
            order = ShardOrder(source, 0, False, clock)
        return ReaderSplit(order, self.ranks)


@functional("shuffle_samples")
class SampleShufflerIterDataPipe(Pipe):
    r"""
    Takes samples and yields them through a seeded shuffle buffer of ``buffer_size``; each reader (worker and
    rank) draws its own stream of random numbers, from the seed, the epoch and its reader number (functional
    name: ``shuffle_samples``).

    A pipe ending here (or in a decoder after it) checkpoints exactly: ``state_dict()`` says what this reader
    has delivered of the epoch (a few kilobytes: where it is in its share, the buffered samples as positions,
    no sample bytes), and ``load_state_dict(state)`` makes the next epoch go on from it, exactly once (see
    ``docs/checkpoint.md``). ``StatefulDataLoader`` calls both on every reader.

    Args:
        source_datapipe: samples, as ``group_wds_samples()`` or ``load_wds_shards()`` give them
        buffer_size: samples held at once; memory grows with it. ``1`` keeps the order
        seed: SEED
        shuffle: ``False`` keeps the order
        rank, world_size: as for ``shard_across_readers`` (the reader number seeds the buffer's draws)

    Note:
        Epochs are counted by the pipe that is iterated, as in ``shuffle_shards``.

    Example:
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> samples = IterableWrapper(range(10)).shuffle_samples(buffer_size=4, seed=0)
        >>> sorted(samples) == list(range(10))
        True
    """

    def __init__(self, source_datapipe: Any, buffer_size: int = 1000, seed: Optional[int] = None, shuffle: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive int, got {buffer_size!r}")
        super().__init__(source_datapipe)
        self.buffer_size = buffer_size
        self.seed, self.seed_chosen = pipe_seed(seed)
        self.shuffle = bool(shuffle)
        self.ranks = check_ranks(rank, world_size)

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return SampleShuffler(self._source_stage(clock), self.buffer_size, self.seed, self.shuffle, clock,
                              self.seed_chosen, self.ranks)


for _pipe in (ShardShufflerIterDataPipe, SampleShufflerIterDataPipe):
    _pipe.__doc__ = _pipe.__doc__.replace("SEED", _SEED)  # type: ignore[union-attr]
