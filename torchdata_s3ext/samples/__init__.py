"""bytes -> samples: ``opener`` (``open_s3``: URLs to streams), ``tar`` (tar members), ``grouping`` (WebDataset
samples, ``group_wds_samples``), ``shards`` (``load_wds_shards``, which can skip a damaged shard), ``policy``
(the bad-data policy), ``concatenated`` (tar archives back to back in one stream, as SageMaker's Pipe Mode
writes them) and ``decode`` (``decode_png_pair``, ``decode_samples``); each datapipe registered on
``IterDataPipe``."""
from .decode import PngPairDecoderIterDataPipe, SampleDecoderIterDataPipe, decode_png, decode_sample
from .grouping import WdsSampleGrouperIterDataPipe, group_by_keys, split_member_name
from .opener import S3OpenerIterDataPipe
from .policy import DataErrorWarning, ErrorCounts
from .shards import WdsShardLoaderIterDataPipe

__all__ = [
    "DataErrorWarning",
    "ErrorCounts",
    "PngPairDecoderIterDataPipe",
    "S3OpenerIterDataPipe",
    "SampleDecoderIterDataPipe",
    "WdsSampleGrouperIterDataPipe",
    "WdsShardLoaderIterDataPipe",
    "decode_png",
    "decode_sample",
    "group_by_keys",
    "split_member_name",
]
