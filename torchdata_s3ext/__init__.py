"""torchdata-s3ext: train PyTorch models straight from S3.

One chain of stages reads WebDataset tar shards: the epoch's seeded shard order, this reader's share of it,
opened on any S3 client, read into tar members, grouped into samples, shuffled and decoded; each stage a plain
iterator with its own state. Three faces over it:

- the datapipes: importing this package registers ``open_s3`` (URLs -> ``(url, stream)`` on any backend,
  ``pipe:`` commands too), ``group_wds_samples`` (tar members -> WebDataset samples), ``load_wds_shards``,
  ``decode_png_pair``, ``decode_samples``, ``shuffle_shards``, ``shard_across_readers`` and
  ``shuffle_samples`` on torch's ``IterDataPipe`` (and ``load_from_tar`` where torchdata 0.9 is not
  installed), so that ``IterableWrapper(urls).open_s3().load_from_tar().group_wds_samples()`` works under
  every torchdata; :func:`wds_pipe` makes the whole chain at once. Each is a plain ``IterableDataset`` with
  ``state_dict()`` / ``load_state_dict()``, for ``DataLoader``, ``StatefulDataLoader`` and Lightning;
- :func:`wds_node`: the same as a ``torchdata.nodes`` node (torchdata 0.10 and later);
- :func:`reading_service`: ``DataLoader2``'s (torchdata 0.9).

:class:`ShardWriter` writes shards straight to S3, with their index (:func:`read_shard_index`), which
``wds_pipe`` reads instead of listing.

The public API is what this module exports, and :mod:`torchdata_s3ext.testing`. Behind it, the layers:
``s3`` (URL -> bytes), ``samples`` (bytes -> samples), ``epochs`` (samples -> epochs), ``faces``, ``writing``
(samples -> shards), with
``tools`` (the ``torchdata-s3ext`` command) beside them; see docs/architecture.md.
"""
from ._config import S3Config
from ._version import __version__
from .epochs import CheckpointMismatch, RankEqualizer, merge_states
from .faces import (
    ExactlyOnceReadingService,
    PngPairDecoderIterDataPipe,
    ReaderShardingIterDataPipe,
    S3OpenerIterDataPipe,
    SampleDecoderIterDataPipe,
    SampleShufflerIterDataPipe,
    ShardShufflerIterDataPipe,
    WdsSampleGrouperIterDataPipe,
    WdsShardLoaderIterDataPipe,
    reading_service,
)
from .pipeline import wds_node, wds_pipe
from .s3 import RequestStats, backend_names, list_shards
from .sagemaker import PipeModeChannelIterDataPipe, sagemaker_pipe
from .samples import DataErrorWarning, ErrorCounts, decode_png, decode_sample, group_by_keys, split_member_name
from .writing import ShardIndex, ShardWriter, read_shard_index

S3Opener = S3OpenerIterDataPipe
WdsSampleGrouper = WdsSampleGrouperIterDataPipe
WdsShardLoader = WdsShardLoaderIterDataPipe
PngPairDecoder = PngPairDecoderIterDataPipe
ShardShuffler = ShardShufflerIterDataPipe
ReaderSharding = ReaderShardingIterDataPipe
SampleShuffler = SampleShufflerIterDataPipe
SampleDecoder = SampleDecoderIterDataPipe
PipeModeChannel = PipeModeChannelIterDataPipe

__all__ = [
    "CheckpointMismatch",
    "DataErrorWarning",
    "ErrorCounts",
    "ExactlyOnceReadingService",
    "PipeModeChannel",
    "PipeModeChannelIterDataPipe",
    "PngPairDecoder",
    "PngPairDecoderIterDataPipe",
    "RankEqualizer",
    "ReaderSharding",
    "ReaderShardingIterDataPipe",
    "RequestStats",
    "S3Config",
    "S3Opener",
    "S3OpenerIterDataPipe",
    "SampleDecoder",
    "SampleDecoderIterDataPipe",
    "SampleShuffler",
    "SampleShufflerIterDataPipe",
    "ShardIndex",
    "ShardShuffler",
    "ShardShufflerIterDataPipe",
    "ShardWriter",
    "WdsSampleGrouper",
    "WdsSampleGrouperIterDataPipe",
    "WdsShardLoader",
    "WdsShardLoaderIterDataPipe",
    "__version__",
    "backend_names",
    "decode_png",
    "decode_sample",
    "group_by_keys",
    "list_shards",
    "merge_states",
    "read_shard_index",
    "reading_service",
    "sagemaker_pipe",
    "split_member_name",
    "wds_node",
    "wds_pipe",
]
