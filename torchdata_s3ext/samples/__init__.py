"""bytes -> samples: ``opener`` (``open_s3``: URLs to streams), ``tar`` (tar members), ``grouping`` (WebDataset
samples, ``group_wds_samples``), ``shards`` (``load_wds_shards``, which can skip a damaged shard), ``policy``
(the bad-data policy) and ``decode`` (``decode_png_pair``); each datapipe registered on ``IterDataPipe``."""
from .decode import PngPairDecoderIterDataPipe, decode_png
from .grouping import WdsSampleGrouperIterDataPipe, group_by_keys, split_member_name
from .opener import S3OpenerIterDataPipe
from .policy import DataErrorWarning, ErrorCounts
from .shards import WdsShardLoaderIterDataPipe

__all__ = [
    "DataErrorWarning",
    "ErrorCounts",
    "PngPairDecoderIterDataPipe",
    "S3OpenerIterDataPipe",
    "WdsSampleGrouperIterDataPipe",
    "WdsShardLoaderIterDataPipe",
    "decode_png",
    "group_by_keys",
    "split_member_name",
]
