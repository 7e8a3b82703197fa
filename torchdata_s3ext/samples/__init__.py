"""bytes -> samples, as stages: ``opener`` (the ``open`` stage: URLs to streams, through the S3 layer's one
way in, :func:`~torchdata_s3ext.s3.opening.open_shard`), ``tar`` (the one tar reader and the ``tar`` stage:
members), ``grouping`` and ``grouper`` (the ``group`` stage: WebDataset samples), ``decode`` (the ``decode`` stage: PNG pairs, or every field by its extension),
``policy`` (the bad-data policy), ``positions`` (where shards and samples lie) and ``concatenated`` (tar
archives back to back in one stream, as SageMaker's Pipe Mode writes them)."""
from .decode import decode_png, decode_sample
from .grouping import group_by_keys, split_member_name
from .policy import DataErrorWarning, ErrorCounts

__all__ = [
    "DataErrorWarning",
    "ErrorCounts",
    "decode_png",
    "decode_sample",
    "group_by_keys",
    "split_member_name",
]
