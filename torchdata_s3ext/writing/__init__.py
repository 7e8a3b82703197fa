"""samples -> bytes -> S3: WebDataset tar shards written straight to S3 (or a local folder) by
:class:`ShardWriter`, and the shard index beside them (``index.json``, webdataset's ``wids`` shape), read back
by :func:`read_shard_index`.

``fields`` encodes a sample's values, ``tar`` lays out its members, ``upload`` streams a shard into a
multipart upload, ``sinks`` chooses S3 or a local file, ``writer`` rolls shards, ``index`` writes and reads the
index, ``scan`` indexes shards written by others.
"""
from .index import ShardIndex, ShardRecord, read_shard_index
from .writer import ShardWriter

__all__ = ["ShardIndex", "ShardRecord", "ShardWriter", "read_shard_index"]
