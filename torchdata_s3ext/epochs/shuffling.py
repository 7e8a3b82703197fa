"""The two seeded shuffles: ``shuffle_shards`` (one shard order per epoch, the same in every reader) and
``shuffle_samples`` (a buffer with its own random stream in every reader), both seeded by :class:`EpochSeeded`."""
import random
from typing import Iterator, List, Optional, TypeVar

from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from .readers import reader_of
from .seeding import EpochSeeded

__all__ = ["SampleShufflerIterDataPipe", "ShardShufflerIterDataPipe"]

T = TypeVar("T")


@functional_datapipe("shuffle_shards")
class ShardShufflerIterDataPipe(EpochSeeded, IterDataPipe[str]):
    r"""
    Takes shard URLs and yields them in a new seeded order each epoch, the same order in every worker and
    rank, so that sharding after it splits one permutation (functional name: ``shuffle_shards``).

    Args:
        source_datapipe: shard URLs (a short list: it is read whole each epoch)
        seed: an int makes epoch ``k``'s order a function of ``seed`` and ``k`` alone: the same in every run,
            worker and rank, under ``DataLoader`` (with or without ``generator=``, any ``num_workers``, ``fork``
            or ``spawn``), ``DataLoader2`` or no loader; the loader's seed is then not used. ``None``: the
            loader's per-epoch seed decides, so only a seeded loader reproduces an order
            (``DataLoader(generator=torch.Generator().manual_seed(n))``, ``DataLoader2.seed(n)``); without a
            loader every epoch is random
        shuffle: ``False`` keeps the given order (loaders may also switch it with ``set_shuffle``)

    Note:
        Epochs are counted by this pipe object, from 1: a new pipe starts again at epoch 1, and one pipe
        iterated by two loaders one after the other goes on counting.

    Example:
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> urls = IterableWrapper(["a.tar", "b.tar", "c.tar"]).shuffle_shards(seed=0)
        >>> sorted(urls) == ["a.tar", "b.tar", "c.tar"]
        True
    """

    def __init__(self, source_datapipe: IterDataPipe[str], seed: Optional[int] = None, shuffle: bool = True) -> None:
        self.source_datapipe = source_datapipe
        self._init_seeding(seed, shuffle)

    def __iter__(self) -> Iterator[str]:
        self._start_epoch()
        shard_urls = list(self.source_datapipe)
        if self.shuffle:
            # The same seed in every reader (no reader in the material): one permutation, split by the sharder.
            random.Random(self._epoch_seed("shards", None)).shuffle(shard_urls)
        yield from shard_urls

    def __len__(self) -> int:
        return len(self.source_datapipe)


@functional_datapipe("shuffle_samples")
class SampleShufflerIterDataPipe(EpochSeeded, IterDataPipe[T]):
    r"""
    Takes samples and yields them through a seeded shuffle buffer of ``buffer_size``; each reader (worker and
    rank) draws its own stream of random numbers, derived from the seed, the epoch and its reader number
    (functional name: ``shuffle_samples``).

    Args:
        source_datapipe: samples (downstream of ``shard_across_readers``, whose reader number it uses)
        buffer_size: samples held at once; memory grows with it. ``1`` keeps the order
        seed: an int makes epoch ``k``'s order in a reader a function of ``seed``, ``k`` and the reader
            (``instance_id`` of ``num_of_instances``: rank, worker, their numbers) alone, whatever the loader's
            seed; so the same ``seed``, epoch and ``num_workers`` x ranks give the same order in every run.
            ``None``: the loader's per-epoch seed decides (see ``shuffle_shards``)
        shuffle: ``False`` keeps the order

    Note:
        Epochs are counted by this pipe object, from 1, as in ``shuffle_shards``.

    Example:
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> samples = IterableWrapper(range(10)).shuffle_samples(buffer_size=4, seed=0)
        >>> sorted(samples) == list(range(10))
        True
    """

    def __init__(
        self, source_datapipe: IterDataPipe[T], buffer_size: int = 1000, seed: Optional[int] = None, shuffle: bool = True
    ) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive int, got {buffer_size!r}")
        self.source_datapipe = source_datapipe
        self.buffer_size = buffer_size
        self._init_seeding(seed, shuffle)

    def __iter__(self) -> Iterator[T]:
        self._start_epoch()
        if not self.shuffle or self.buffer_size == 1:
            yield from self.source_datapipe
            return
        rng = random.Random(self._epoch_seed("samples", reader_of(self.source_datapipe)))
        buffer: List[T] = []
        for sample in self.source_datapipe:
            if len(buffer) < self.buffer_size:
                buffer.append(sample)
                continue
            index = rng.randrange(self.buffer_size)
            yield buffer[index]
            buffer[index] = sample
        rng.shuffle(buffer)
        while buffer:
            yield buffer.pop()

    def __len__(self) -> int:
        return len(self.source_datapipe)
