"""bytes -> samples: ``open_s3`` (URLs to streams), tar reading, WebDataset grouping, the bad-data policy and
PNG decoding, each a datapipe registered on ``IterDataPipe``."""
from .decode import PngPairDecoderIterDataPipe, decode_png
from .opener import S3OpenerIterDataPipe
from .policy import DataErrorWarning, ErrorCounts
from .wds import WdsSampleGrouperIterDataPipe, WdsShardLoaderIterDataPipe, group_by_keys, split_member_name

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
