"""torchdata-s3ext: train PyTorch models straight from S3.

Importing this package registers these functional forms on torchdata's ``IterDataPipe``:
``open_s3`` (URLs -> ``(url, stream)`` on any backend, ``pipe:`` commands too), ``group_wds_samples`` (tar members -> WebDataset
samples), ``decode_png_pair`` (PNG bytes -> uint8 tensors), ``decode_samples`` (every field by its extension: JPEG,
PNG, cls, json, npy, ...), ``load_wds_shards`` (``(url, stream)`` -> samples, with an
error policy for damaged shards), ``shuffle_shards``, ``shard_across_readers`` and
``shuffle_samples`` (seeded, per-epoch, exactly-once sharding across workers and ranks).

The public API is what this module exports, and :mod:`torchdata_s3ext.testing`. Behind it, the layers:
``s3`` (URL -> bytes), ``samples`` (bytes -> samples), ``epochs`` (samples -> epochs), with ``tools`` (the
``torchdata-s3ext`` command) beside them; see docs/architecture.md.

Importing this package silences, for the rest of the process, the one banner torchdata 0.9 prints when
``torchdata.datapipes`` or ``torchdata.dataloader2`` is first imported ("The 'datapipes', 'dataloader2'
modules are deprecated ..."; we depend on them knowingly, see docs/torchdata.md). A banner printed before
this import was printed by torchdata itself, which warns once per process: import ``torchdata_s3ext`` first
to never see it.
"""
import warnings

# Installed for good, not in catch_warnings: torchdata warns at the first import of either module, which may
# come after ours. Only this message, only as the UserWarning torchdata gives it.
warnings.filterwarnings(
    "ignore", message=r"\s*#+\s*WARNING!\s*The 'datapipes', 'dataloader2' modules are deprecated", category=UserWarning
)

import torchdata.datapipes  # noqa: E402,F401

from ._config import S3Config
from ._version import __version__
from .epochs import (
    CheckpointMismatch,
    ExactlyOnceReadingService,
    RankEqualizer,
    ReaderShardingIterDataPipe,
    SampleShufflerIterDataPipe,
    ShardShufflerIterDataPipe,
    merge_states,
    reading_service,
)
from .pipeline import wds_pipe
from .s3 import RequestStats, backend_names, list_shards
from .sagemaker import PipeModeChannelIterDataPipe, sagemaker_pipe
from .samples import (
    DataErrorWarning,
    ErrorCounts,
    PngPairDecoderIterDataPipe,
    S3OpenerIterDataPipe,
    SampleDecoderIterDataPipe,
    WdsSampleGrouperIterDataPipe,
    WdsShardLoaderIterDataPipe,
    decode_png,
    decode_sample,
    group_by_keys,
    split_member_name,
)

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
    "ShardShuffler",
    "ShardShufflerIterDataPipe",
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
    "reading_service",
    "sagemaker_pipe",
    "split_member_name",
    "wds_pipe",
]
