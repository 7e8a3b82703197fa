r"""The ``DataLoader2`` face (torchdata 0.9 only): :func:`reading_service` runs a pipe on
``StatefulDataLoader``'s workers (so ``DataLoader2.state_dict()`` checkpoints it), shards it over the ranks of a
process group, and equalizes the ranks' counts if asked; and, where torchdata 0.9 is installed, its datapipes
are imported so that ``load_from_tar`` is torchdata's. No other module imports ``torchdata.datapipes`` or
``torchdata.dataloader2``.

Why not torchdata's own services (0.9): ``DistributedReadingService`` appends ``fullsync()``, which ends the
epoch on every rank as soon as one rank runs out, silently dropping the other ranks' remaining samples; and
``MultiProcessingReadingService``'s consumer (``communication.iter._IterateQueueDataPipes``) keeps separate
request and response cursors over the workers, which drift apart once one worker has answered ``StopIteration``
(uneven samples per worker): it then waits on a worker it never asked ("Can not expect any response without
submitted request"). ``torch.utils.data.DataLoader`` handles both cases correctly, so our service drives it,
in torchdata's ``StatefulDataLoader`` form. Those services also walk a graph of ``IterDataPipe``\ s, which our
pipes are not: wrap ours in ``IterableWrapper(pipe)`` to run them there.
"""
import functools
import importlib.metadata
import importlib.util
import pickle
import warnings
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data.datapipes.datapipe import IterDataPipe

from ..epochs.equalizer import RankEqualizer, check_equalize_mode
from ..epochs.readers import split_over_ranks

__all__ = ["ExactlyOnceReadingService", "has_torchdata_datapipes", "reading_service"]

T = TypeVar("T")

#: torchdata 0.9 prints this once, at the first import of torchdata.datapipes or torchdata.dataloader2
_BANNER = r"\s*#+\s*WARNING!\s*The 'datapipes', 'dataloader2' modules are deprecated"


def has_torchdata_datapipes() -> bool:
    """Whether torchdata 0.9's datapipes are installed (0.10 and later have none); if so they are imported,
    so that their ``load_from_tar`` has its name, and their deprecation banner is silenced for the process."""
    if importlib.util.find_spec("torchdata") is None or importlib.util.find_spec("torchdata.datapipes") is None:
        return False
    warnings.filterwarnings("ignore", message=_BANNER, category=UserWarning)
    import torchdata.datapipes  # noqa: F401

    return True


def _needs_torchdata_09() -> ModuleNotFoundError:
    try:
        installed = f"torchdata {importlib.metadata.version('torchdata')}"
    except importlib.metadata.PackageNotFoundError:
        installed = "no torchdata"
    return ModuleNotFoundError(
        f"DataLoader2 and reading_service need torchdata 0.9 (`pip install 'torchdata==0.9.*'`), and this "
        f"environment has {installed}; with torchdata 0.10 or later use StatefulDataLoader(wds_pipe(...)) or "
        "Loader(wds_node(...))"
    )


def _keep_sample(sample: T) -> T:
    """``collate_fn`` that leaves samples as the pipe made them (the default would turn arrays into tensors)."""
    return sample


def _split_over_workers_only(worker_init_fn: Optional[Callable[[int], None]], worker_id: int) -> None:
    split_over_ranks(False)
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


try:
    if not has_torchdata_datapipes():
        raise ImportError("no torchdata.datapipes")
    from torchdata.dataloader2 import CheckpointableReadingServiceInterface
    from torchdata.stateful_dataloader import StatefulDataLoader
except ImportError:
    CheckpointableReadingServiceInterface = None


if CheckpointableReadingServiceInterface is not None:

    class _ServedIterDataPipe(IterDataPipe):  # type: ignore[misc]
        """What ``DataLoader2`` iterates: the reading service's ``DataLoader``, equalized if asked."""

        def __init__(self, service: "ExactlyOnceReadingService") -> None:
            self.service = service

        def __iter__(self) -> Iterator[Any]:
            return self.service._serve()


    class ExactlyOnceReadingService(CheckpointableReadingServiceInterface):  # type: ignore[misc, valid-type]
        r"""
        A ``DataLoader2`` reading service that delivers every sample exactly once per epoch, however the shards
        fall over workers and ranks (uneven, empty, fewer than readers), on ``torch.utils.data.DataLoader``'s
        worker processes. Make one with :func:`reading_service`.

        Shard-level sharding needs ``shard_across_readers`` in the pipe, and a fresh order per epoch needs
        ``shuffle_shards`` before it; :func:`wds_pipe` has both. The pipe's ``seed`` fixes the orders
        (``DataLoader2.seed(n)`` does not: it reaches no pipe of ours).

        After each epoch with ``equalize``, ``samples_dropped`` / ``samples_repeated`` on ``dataloader2.reading_service``
        (``DataLoader2`` works on a copy of the service you pass) say what this rank dropped or repeated.

        Checkpoints: ``DataLoader2.state_dict()`` holds this service's state (its ``StatefulDataLoader``'s, which
        holds each worker's pipe state), and ``DataLoader2.from_state(state, reading_service(N))`` goes on from it,
        every sample of the epoch exactly once (see ``docs/checkpoint.md``); with ``equalize`` there is none, since
        the equalizer holds samples back.
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
            if equalize is not None:
                check_equalize_mode(equalize)
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
            self._loader: Optional[StatefulDataLoader] = None
            self._loader_iter: Optional[Iterator[Any]] = None
            self._generator: Optional[torch.Generator] = None
            self._equalize_group: Optional[Any] = None

        def _in_process_group(self) -> bool:
            in_group = dist.is_available() and dist.is_initialized()
            if self.distributed and not in_group:
                raise RuntimeError("distributed=True needs an initialised torch.distributed process group (init_process_group)")
            return in_group

        def initialize(self, datapipe: Any) -> Any:
            in_group = self._in_process_group()
            if in_group and self.distributed is not False:
                self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
            loader_kwargs = dict(self.loader_kwargs)
            if self.distributed is False:  # every rank reads every shard: its workers split them
                loader_kwargs["worker_init_fn"] = functools.partial(_split_over_workers_only, loader_kwargs.get("worker_init_fn"))
            if self.equalize is not None and self.world_size > 1:
                self._equalize_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.group_timeout))
            self._generator = torch.Generator()
            self._loader = StatefulDataLoader(
                datapipe,
                batch_size=None,
                num_workers=self.num_workers,
                multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
                generator=self._generator,
                **loader_kwargs,
            )
            return _ServedIterDataPipe(self)

        def initialize_iteration(
            self, seed_generator: Any, iter_reset_fn: Optional[Callable[[Any], Any]] = None
        ) -> Optional[Callable[[Any], Any]]:
            if self._generator is None:
                raise RuntimeError("initialize() must run before initialize_iteration()")
            # One shared seed per epoch from DataLoader2's generator; the DataLoader broadcasts rank 0's to all ranks.
            self._generator.manual_seed(seed_generator.generate_shared_seed())
            return None

        def _serve(self) -> Iterator[Any]:
            if self._loader is None:
                raise RuntimeError("initialize() must run before iterating")
            split_over_ranks(self.distributed is not False)  # the process reading with num_workers=0
            try:
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
            finally:
                split_over_ranks(True)

        def checkpoint(self) -> bytes:
            """The loader's state (each worker's pipe state in it), for ``DataLoader2.state_dict()``."""
            if self._loader is None:
                raise RuntimeError("initialize() must run before checkpoint()")
            if self._equalize_group is not None:
                raise RuntimeError("a reading service with equalize= holds samples back and cannot be checkpointed")
            return pickle.dumps(self._loader.state_dict())

        def restore(self, datapipe: Any, serialized_state: bytes) -> Any:
            """Set up as :meth:`initialize` does, the loader going on from ``serialized_state``."""
            served = self.initialize(datapipe)
            assert self._loader is not None
            self._loader.load_state_dict(pickle.loads(serialized_state))
            return served

        def finalize_iteration(self) -> None:
            self._loader_iter = None

        def finalize(self) -> None:
            # The DataLoader's iterator stops its worker processes when it is released.
            self._loader_iter = None
            self._loader = None

else:

    class ExactlyOnceReadingService:  # type: ignore[no-redef]
        """``DataLoader2``'s reading service; this environment's torchdata has no ``DataLoader2`` (see the error)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise _needs_torchdata_09()


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
