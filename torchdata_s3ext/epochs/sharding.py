"""Every sample exactly once per epoch, in a fresh seeded order, across DataLoader workers and distributed ranks.

The pieces: ``shuffle_shards`` (one shard order per epoch, the same in every reader), ``shard_across_readers``
(round-robin over ranks x workers), ``shuffle_samples`` (a seeded buffer, a different stream in every reader),
:class:`RankEqualizer` (optional: the same number of samples on every rank) and
:class:`ExactlyOnceReadingService`, a ``DataLoader2`` reading service on ``torch.utils.data.DataLoader``'s workers.

Why not torchdata's own services (0.9): ``DistributedReadingService`` appends ``fullsync()``, which ends the
epoch on every rank as soon as one rank runs out, silently dropping the other ranks' remaining samples; and
``MultiProcessingReadingService``'s consumer (``communication.iter._IterateQueueDataPipes``) keeps separate
request and response cursors over the workers, which drift apart once one worker has answered ``StopIteration``
(uneven samples per worker): it then waits on a worker it never asked ("Can not expect any response without
submitted request"). ``torch.utils.data.DataLoader`` handles both cases correctly, so our service drives it.
"""
import hashlib
import logging
import random
import warnings
from collections import deque
from datetime import timedelta
from itertools import islice
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.datapipes.iter.sharding import SHARDING_PRIORITIES, ShardingFilterIterDataPipe
from torch.utils.data.graph import traverse_dps
from torch.utils.data.graph_settings import get_all_graph_pipes
from torchdata.dataloader2 import ReadingServiceInterface
from torchdata.dataloader2.random import SeedGenerator
from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

__all__ = [
    "EQUALIZE_MODES",
    "ExactlyOnceReadingService",
    "RankEqualizer",
    "ReaderShardingIterDataPipe",
    "SampleShufflerIterDataPipe",
    "ShardShufflerIterDataPipe",
    "epoch_seed",
    "preflight_warning",
    "reading_service",
]

logger = logging.getLogger("torchdata_s3ext")

T = TypeVar("T")

#: what ``equalize=`` accepts besides ``None``
EQUALIZE_MODES = ("drop", "pad")


def epoch_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts, identical in every process (unlike ``hash()``)."""
    material = "|".join(map(repr, parts)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little")


def preflight_warning(num_shards: int, num_readers: int, layout: str = "ranks x workers") -> Optional[str]:
    """The warning for fewer shards than readers, or ``None`` when every reader gets at least one shard."""
    if num_shards >= num_readers:
        return None
    return (
        f"only {num_shards} shards for {num_readers} readers ({layout}): {num_readers - num_shards} readers get "
        f"no shard and stay idle this epoch. Write at least {num_readers} shards (better: many times more, "
        "smaller ones), or use fewer DataLoader workers."
    )


class _EpochSeeded:
    """Seeding shared by the two shufflers: the loader's per-epoch seed when it gives one, else our own epochs.

    ``DataLoader`` and ``DataLoader2`` call ``set_seed`` with a fresh seed every epoch (drawn from the loader's
    generator or ``DataLoader2.seed()``, broadcast from rank 0); without a loader, epochs are counted here.
    """

    seed: Optional[int]
    shuffle: bool

    def _init_seeding(self, seed: Optional[int], shuffle: bool) -> None:
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        self.seed = seed
        self.shuffle = shuffle
        self._loader_seed: Optional[int] = None
        self._epoch = 0

    def set_shuffle(self, shuffle: bool = True) -> Any:
        self.shuffle = shuffle
        return self

    def set_seed(self, seed: int) -> Any:
        self._loader_seed = int(seed)
        return self

    def _next_epoch_seed(self, role: str, reader: object) -> int:
        self._epoch += 1
        if self._loader_seed is not None:
            return epoch_seed(role, self.seed, self._loader_seed, reader)
        own = self.seed if self.seed is not None else random.SystemRandom().getrandbits(64)
        return epoch_seed(role, own, self._epoch, reader)


@functional_datapipe("shuffle_shards")
class ShardShufflerIterDataPipe(_EpochSeeded, IterDataPipe[str]):
    r"""
    Takes shard URLs and yields them in a new seeded order each epoch, the same order in every worker and
    rank, so that sharding after it splits one permutation (functional name: ``shuffle_shards``).

    Args:
        source_datapipe: shard URLs (a short list: it is read whole each epoch)
        seed: mixed into every epoch's order; ``None`` leaves the order to the loader's seed alone
        shuffle: ``False`` keeps the given order (loaders may also switch it with ``set_shuffle``)

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
        shard_urls = list(self.source_datapipe)
        if self.shuffle:
            # The same seed in every reader (no reader in the material): one permutation, split by the sharder.
            random.Random(self._next_epoch_seed("shards", None)).shuffle(shard_urls)
        yield from shard_urls

    def __len__(self) -> int:
        return len(self.source_datapipe)


@functional_datapipe("shard_across_readers")
class ReaderShardingIterDataPipe(ShardingFilterIterDataPipe):
    r"""
    Takes shard URLs and yields this reader's share, round-robin over all readers (ranks x DataLoader workers),
    warning when there are fewer shards than readers (functional name: ``shard_across_readers``).

    ``torch.utils.data.DataLoader``, ``DataLoader2`` and :class:`ExactlyOnceReadingService` tell it which reader
    it is (``apply_sharding``), exactly like torch's ``sharding_filter``, which it replaces for shard lists.

    Args:
        source_datapipe: shard URLs, the same list in the same order in every reader

    Example:
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> share = IterableWrapper(["a.tar", "b.tar", "c.tar"]).shard_across_readers()
        >>> _ = share.apply_sharding(2, 1)
        >>> list(share)
        ['b.tar']
    """

    def __init__(self, source_datapipe: IterDataPipe[str]) -> None:
        super().__init__(source_datapipe)
        #: set by a reading service with ``distributed=False`` inside a process group: every rank reads everything
        self.ignore_world_size = 1

    def apply_sharding(
        self, num_of_instances: int, instance_id: int, sharding_group: SHARDING_PRIORITIES = SHARDING_PRIORITIES.DEFAULT
    ) -> None:
        if self.ignore_world_size > 1 and sharding_group != SHARDING_PRIORITIES.MULTIPROCESSING:
            # torch's DataLoader numbers readers worker * world_size + rank; keep the worker part only.
            num_of_instances, instance_id = num_of_instances // self.ignore_world_size, instance_id // self.ignore_world_size
        super().apply_sharding(num_of_instances, instance_id, sharding_group)

    def __iter__(self) -> Iterator[str]:
        shard_urls = list(self.source_datapipe)
        if self.instance_id == 0:
            message = preflight_warning(len(shard_urls), self.num_of_instances, _reader_layout(self.num_of_instances))
            if message:
                warnings.warn(message, stacklevel=2)
        yield from shard_urls[self.instance_id :: self.num_of_instances]


def _reader_layout(num_readers: int) -> str:
    worker_info = torch.utils.data.get_worker_info()
    if worker_info is None or num_readers % worker_info.num_workers:
        return "ranks x workers"
    return f"{num_readers // worker_info.num_workers} ranks x {worker_info.num_workers} workers"


def _reader_of(datapipe: IterDataPipe) -> Tuple[int, int]:
    """``(instance_id, num_of_instances)`` of the sharding pipe upstream of ``datapipe``, ``(0, 1)`` if none."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ShardingFilterIterDataPipe):
            return pipe.instance_id, pipe.num_of_instances
    return 0, 1


@functional_datapipe("shuffle_samples")
class SampleShufflerIterDataPipe(_EpochSeeded, IterDataPipe[T]):
    r"""
    Takes samples and yields them through a seeded shuffle buffer of ``buffer_size``; each reader (worker and
    rank) draws its own stream of random numbers, derived from the seed, the epoch and its reader number
    (functional name: ``shuffle_samples``).

    Args:
        source_datapipe: samples (downstream of ``shard_across_readers``, whose reader number it uses)
        buffer_size: samples held at once; memory grows with it. ``1`` keeps the order
        seed: mixed into every epoch's order; ``None`` leaves the order to the loader's seed alone
        shuffle: ``False`` keeps the order

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
        if not self.shuffle or self.buffer_size == 1:
            yield from self.source_datapipe
            return
        rng = random.Random(self._next_epoch_seed("samples", _reader_of(self.source_datapipe)))
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
        if mode not in EQUALIZE_MODES:
            raise ValueError(f"equalize must be one of {EQUALIZE_MODES} or None, got {mode!r}")
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


def _keep_sample(sample: T) -> T:
    """``collate_fn`` that leaves samples as the pipe made them (the default would turn arrays into tensors)."""
    return sample


class _ServedIterDataPipe(IterDataPipe):
    """What ``DataLoader2`` iterates: the reading service's ``DataLoader``, equalized if asked."""

    def __init__(self, service: "ExactlyOnceReadingService") -> None:
        self.service = service

    def __iter__(self) -> Iterator[Any]:
        return self.service._serve()


class ExactlyOnceReadingService(ReadingServiceInterface):
    r"""
    A ``DataLoader2`` reading service that delivers every sample exactly once per epoch, however the shards
    fall over workers and ranks (uneven, empty, fewer than readers), on ``torch.utils.data.DataLoader``'s
    worker processes. Make one with :func:`reading_service`.

    Shard-level sharding needs ``shard_across_readers`` (or torch's ``sharding_filter``) in the pipe, and a fresh
    order per epoch needs ``shuffle_shards`` before it; :func:`wds_pipe` has both. ``DataLoader2.seed(n)`` fixes
    the sequence of epoch orders; in a process group rank 0's seed is used by all ranks.

    After each epoch with ``equalize``, ``samples_dropped`` / ``samples_repeated`` on ``dataloader2.reading_service``
    (``DataLoader2`` works on a copy of the service you pass) say what this rank dropped or repeated.
    """

    def __init__(
        self,
        num_workers: int = 0,
        distributed: Optional[bool] = None,
        *,
        equalize: Optional[str] = None,
        multiprocessing_context: Optional[str] = None,
        equalize_window: int = 16,
        group_timeout: float = 1800.0,
        **loader_kwargs: Any,
    ) -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if distributed not in (None, True, False):
            raise ValueError(f"distributed must be None (detect), True or False, got {distributed!r}")
        if equalize is not None and equalize not in EQUALIZE_MODES:
            raise ValueError(f"equalize must be one of {EQUALIZE_MODES} or None, got {equalize!r}")
        if multiprocessing_context is not None and multiprocessing_context not in torch.multiprocessing.get_all_start_methods():
            raise ValueError(
                f"multiprocessing_context must be one of {torch.multiprocessing.get_all_start_methods()}, "
                f"got {multiprocessing_context!r}"
            )
        for reserved in ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "generator"):
            if reserved in loader_kwargs:
                raise TypeError(f"{reserved}= is set by the reading service; batch in the pipe (e.g. .batch(n))")
        self.num_workers = num_workers
        self.distributed = distributed
        self.equalize = equalize
        self.multiprocessing_context = multiprocessing_context
        self.equalize_window = equalize_window
        self.group_timeout = group_timeout
        loader_kwargs.setdefault("collate_fn", _keep_sample)
        self.loader_kwargs = loader_kwargs
        self.samples_dropped = 0
        self.samples_repeated = 0
        self.rank = 0
        self.world_size = 1
        self._loader: Optional[DataLoader] = None
        self._loader_iter: Optional[Iterator[Any]] = None
        self._generator: Optional[torch.Generator] = None
        self._equalize_group: Optional[Any] = None

    def _in_process_group(self) -> bool:
        in_group = dist.is_available() and dist.is_initialized()
        if self.distributed and not in_group:
            raise RuntimeError("distributed=True needs an initialised torch.distributed process group (init_process_group)")
        return in_group

    def initialize(self, datapipe: IterDataPipe) -> IterDataPipe:
        in_group = self._in_process_group()
        if in_group and self.distributed is not False:
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        if in_group and self.distributed is False:
            for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
                if isinstance(pipe, ReaderShardingIterDataPipe):
                    pipe.ignore_world_size = dist.get_world_size()
        if self.equalize is not None and self.world_size > 1:
            self._equalize_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.group_timeout))
        self._generator = torch.Generator()
        self._loader = DataLoader(
            datapipe,
            batch_size=None,
            num_workers=self.num_workers,
            multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
            generator=self._generator,
            **self.loader_kwargs,
        )
        return _ServedIterDataPipe(self)

    def initialize_iteration(
        self, seed_generator: SeedGenerator, iter_reset_fn: Optional[Callable[[IterDataPipe], IterDataPipe]] = None
    ) -> Optional[Callable[[IterDataPipe], IterDataPipe]]:
        if self._generator is None:
            raise RuntimeError("initialize() must run before initialize_iteration()")
        # One shared seed per epoch from DataLoader2's generator; the DataLoader broadcasts rank 0's to all ranks.
        self._generator.manual_seed(seed_generator.generate_shared_seed())
        return None

    def _serve(self) -> Iterator[Any]:
        if self._loader is None:
            raise RuntimeError("initialize() must run before iterating")
        self._loader_iter = iter(self._loader)
        if self._equalize_group is None:
            yield from self._loader_iter
            return
        equalizer = RankEqualizer(self._loader_iter, str(self.equalize), self._equalize_group, self.equalize_window)
        try:
            yield from equalizer
        finally:
            self.samples_dropped = equalizer.samples_dropped
            self.samples_repeated = equalizer.samples_repeated

    def finalize_iteration(self) -> None:
        self._loader_iter = None

    def finalize(self) -> None:
        # The DataLoader's iterator stops its worker processes when it is released.
        self._loader_iter = None
        self._loader = None


def reading_service(
    num_workers: int = 0,
    distributed: Optional[bool] = None,
    *,
    equalize: Optional[str] = None,
    multiprocessing_context: Optional[str] = None,
    **loader_kwargs: Any,
) -> ExactlyOnceReadingService:
    """A ``DataLoader2`` reading service that delivers every sample exactly once per epoch.

    Args:
        num_workers: DataLoader worker processes per rank (``0``: read in the training process)
        distributed: ``None`` shards over the ranks of an initialised ``torch.distributed`` group if there is
            one; ``True`` requires one; ``False`` makes every rank read every shard (a pipe with
            ``shard_across_readers``; torch's ``sharding_filter`` always splits over ranks)
        equalize: ``None`` delivers every sample, so ranks may get unequal counts (wrap DDP's training loop
            in ``torch.distributed.algorithms.Join``); ``"drop"`` or ``"pad"`` give every rank the same count
            of items (samples, or batches if the pipe batches) by dropping the surplus or repeating recent
            items, reported per epoch in ``samples_dropped`` / ``samples_repeated`` and a warning on logger
            ``torchdata_s3ext``
        multiprocessing_context: ``"fork"``, ``"spawn"`` or ``"forkserver"``; ``None``: the platform default
        loader_kwargs: passed to ``torch.utils.data.DataLoader`` (``prefetch_factor``, ``persistent_workers``,
            ``pin_memory``, ``timeout``, ``worker_init_fn``, ...); batch in the pipe, not here

    Example:
        >>> from torchdata.dataloader2 import DataLoader2
        >>> loader = DataLoader2(wds_pipe("s3://bkt/train/"), reading_service=reading_service(4))  # doctest: +SKIP
    """
    return ExactlyOnceReadingService(
        num_workers, distributed, equalize=equalize, multiprocessing_context=multiprocessing_context, **loader_kwargs
    )

