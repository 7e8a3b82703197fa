"""Readers: ``shard_across_readers`` splits shard URLs over ranks x DataLoader workers, and the helpers that
find or change which reader a pipe is (``instance_id`` of ``num_of_instances``)."""
import warnings
from typing import Iterator, Optional, Tuple

import torch
from torch.utils.data.datapipes.iter.sharding import SHARDING_PRIORITIES, ShardingFilterIterDataPipe
from torch.utils.data.graph import traverse_dps
from torch.utils.data.graph_settings import get_all_graph_pipes
from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

__all__ = ["ReaderShardingIterDataPipe", "preflight_warning", "reader_of", "split_over_workers_only"]


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


def reader_of(datapipe: IterDataPipe) -> Tuple[int, int]:
    """``(instance_id, num_of_instances)`` of the sharding pipe upstream of ``datapipe``, ``(0, 1)`` if none."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ShardingFilterIterDataPipe):
            return pipe.instance_id, pipe.num_of_instances
    return 0, 1


def split_over_workers_only(datapipe: IterDataPipe, world_size: int) -> None:
    """Makes every ``shard_across_readers`` in ``datapipe`` split over DataLoader workers only, so that each of
    the ``world_size`` ranks reads every shard (torch's ``sharding_filter`` always splits over ranks)."""
    for pipe in get_all_graph_pipes(traverse_dps(datapipe)):
        if isinstance(pipe, ReaderShardingIterDataPipe):
            pipe.ignore_world_size = world_size
