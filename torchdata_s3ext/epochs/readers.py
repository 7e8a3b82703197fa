"""Readers: ``shard_across_readers`` splits shard URLs over ranks x DataLoader workers, and the helpers that
find or change which reader a pipe is (``instance_id`` of ``num_of_instances``)."""
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils.data.datapipes.iter.sharding import SHARDING_PRIORITIES, ShardingFilterIterDataPipe
from torch.utils.data.graph import traverse_dps
from torch.utils.data.graph_settings import get_all_graph_pipes
from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from ..samples.positions import ShardSlice
from .checkpoint import check_fits, resumed_items, shards_digest

__all__ = ["ReaderShardingIterDataPipe", "preflight_warning", "reader_of", "sharding_of", "split_over_workers_only"]


def preflight_warning(num_shards: int, num_readers: int, layout: str = "ranks x workers") -> Optional[str]:
    """The warning for fewer shards than readers, or ``None`` when every reader gets at least one shard."""
    if num_shards >= num_readers:
        return None
    return (
        f"only {num_shards} shards for {num_readers} readers ({layout}): {num_readers - num_shards} readers get "
        f"no shard and stay idle this epoch. Write at least {num_readers} shards (better: many times more, "
        "smaller ones), or use fewer DataLoader workers."
    )


@functional_datapipe("shard_across_readers")
class ReaderShardingIterDataPipe(ShardingFilterIterDataPipe):
    r"""
    Takes shard URLs and yields this reader's share, round-robin over all readers (ranks x DataLoader workers),
    warning when there are fewer shards than readers (functional name: ``shard_across_readers``).

    ``torch.utils.data.DataLoader``, ``DataLoader2`` and :class:`ExactlyOnceReadingService` tell it which reader
    it is (``apply_sharding``), exactly like torch's ``sharding_filter``, which it replaces for shard lists.

    The URLs it yields are :class:`~torchdata_s3ext.samples.positions.ShardSlice` strings, numbered in this
    reader's work for the epoch, so that a checkpoint can say what is left of it; a pass resumed from a
    checkpoint (``shuffle_samples().load_state_dict``) yields what was left instead of a whole share. Items
    that are not strings pass as they are.

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
        #: ``world_size`` when every rank reads every shard (:func:`split_over_workers_only`), else 1
        self.ignore_world_size = 1
        #: ``(count, digest)`` of the shard list of the latest pass
        self.epoch_shards: Optional[Tuple[int, str]] = None
        self.items: List[ShardSlice] = []
        self._plan: Optional[Tuple[Dict[str, Any], Optional[int]]] = None

    def apply_sharding(
        self, num_of_instances: int, instance_id: int, sharding_group: SHARDING_PRIORITIES = SHARDING_PRIORITIES.DEFAULT
    ) -> None:
        if self.ignore_world_size > 1 and sharding_group != SHARDING_PRIORITIES.MULTIPROCESSING:
            # torch's DataLoader numbers readers worker * world_size + rank; keep the worker part only.
            num_of_instances, instance_id = num_of_instances // self.ignore_world_size, instance_id // self.ignore_world_size
        super().apply_sharding(num_of_instances, instance_id, sharding_group)

    def __iter__(self) -> Iterator[str]:
        shard_urls = list(self.source_datapipe)
        if self.instance_id == 0 and self._plan is None:
            message = preflight_warning(len(shard_urls), self.num_of_instances, _reader_layout(self.num_of_instances))
            if message:
                warnings.warn(message, stacklevel=2)
        self.epoch_shards = (len(shard_urls), shards_digest(shard_urls))
        plan, self._plan = self._plan, None
        if plan is None:
            share = shard_urls[self.instance_id :: self.num_of_instances]
            # URLs are numbered for checkpoints; anything else (the pipe also shards other items) passes as it is.
            items = [ShardSlice.of(url, item) if isinstance(url, str) else url for item, url in enumerate(share)]
        else:
            state, seed = plan
            check_fits(state, seed=seed, shards=self.epoch_shards)
            items = resumed_items(state, shard_urls, (self.instance_id, self.num_of_instances))
        #: this pass's work, numbered: what a checkpoint says is left of
        self.items: List[ShardSlice] = items
        yield from items

    def resume_from(self, state: Dict[str, Any], seed: Optional[int]) -> None:
        """Make the next pass read what checkpoint ``state`` (of a pipe with ``seed``) left of its epoch, this
        reader's share of it, instead of a whole share (``shuffle_samples`` calls it)."""
        self._plan = (state, seed)


def _reader_layout(num_readers: int) -> str:
    worker_info = torch.utils.data.get_worker_info()
    if worker_info is None or num_readers % worker_info.num_workers:
        return "ranks x workers"
    return f"{num_readers // worker_info.num_workers} ranks x {worker_info.num_workers} workers"


def reader_of(datapipe: IterDataPipe) -> Tuple[int, int]:
    """``(instance_id, num_of_instances)`` of the sharding pipe upstream of ``datapipe``, ``(0, 1)`` if none."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ShardingFilterIterDataPipe):
            return pipe.instance_id, pipe.num_of_instances
    return 0, 1


def sharding_of(datapipe: IterDataPipe) -> Optional[ReaderShardingIterDataPipe]:
    """The ``shard_across_readers`` pipe upstream of ``datapipe``, or ``None``."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ReaderShardingIterDataPipe):
            return pipe
    return None


def split_over_workers_only(datapipe: IterDataPipe, world_size: int) -> None:
    """Makes every ``shard_across_readers`` in ``datapipe`` split over DataLoader workers only, so that each of
    the ``world_size`` ranks reads every shard (torch's ``sharding_filter`` always splits over ranks)."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ReaderShardingIterDataPipe):
            pipe.ignore_world_size = world_size
