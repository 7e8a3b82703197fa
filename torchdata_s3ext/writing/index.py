"""Writing the shard index (its shape and reading: :mod:`torchdata_s3ext.s3.shard_index`)."""
import json
from typing import Any, Dict, Sequence

from .._config import S3Config
from ..s3.shard_index import INDEX_KIND, INDEX_NAME, ShardIndex, ShardRecord, index_url_beside, read_shard_index
from .sinks import open_sink
from .upload import MIN_PART_SIZE, UploadPool

__all__ = ["INDEX_KIND", "INDEX_NAME", "ShardIndex", "ShardRecord", "index_url_beside", "read_shard_index",
           "write_shard_index"]


def _dumps(document: Dict[str, Any]) -> str:
    """JSON with one shard per line: small, and readable with ``head``."""
    shardlist = document["shardlist"]
    head = json.dumps({name: value for name, value in document.items() if name != "shardlist"})
    entries = ",\n".join(" " + json.dumps(entry) for entry in shardlist)
    return f'{head[:-1]}, "shardlist": [\n{entries}\n]}}\n'


def write_shard_index(url: str, shards: Sequence[ShardRecord], config: S3Config) -> ShardIndex:
    """Write the index of ``shards`` (in this order) to ``url``, whole or not at all, and return it."""
    index = ShardIndex(url, tuple(shards))
    data = _dumps(index.to_document()).encode("utf-8")
    pool = UploadPool(max_in_flight=2)
    try:
        sink = open_sink(url, config, pool, MIN_PART_SIZE)
        try:
            sink.write(data)
            sink.finish().result()
        except BaseException:
            sink.abort()
            raise
    finally:
        pool.shutdown()
    return index
