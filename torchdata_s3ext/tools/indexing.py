"""``torchdata-s3ext index SRC``: the shard index of shards written by others (or before ``ShardWriter``),
built from their tar headers (see :mod:`torchdata_s3ext.writing.scan` for what that reads and costs)."""
import re
from typing import Optional, Tuple

from .._config import S3Config
from ..s3.listing import SHARD_SUFFIXES, list_shards
from ..s3.stats import RequestStats, process_stats
from ..writing.index import INDEX_NAME, ShardIndex, index_url_beside, write_shard_index
from ..writing.scan import scan_shards

__all__ = ["default_index_url", "index_shards"]


def default_index_url(spec: str) -> str:
    """Where the index of ``spec``'s shards goes: in the folder ``spec`` names, or beside its shards.

    >>> default_index_url("s3://bkt/train"), default_index_url("s3://bkt/train/shard-{000000..000009}.tar")
    ('s3://bkt/train/index.json', 's3://bkt/train/index.json')
    """
    names_shards = re.search(r"[*?\[{]", spec) or spec.lower().endswith(SHARD_SUFFIXES)
    return index_url_beside(spec) if names_shards else spec.rstrip("/") + "/" + INDEX_NAME


def index_shards(
    spec: str, config: S3Config, *, out: Optional[str] = None, jobs: int = 4, full_read: bool = False,
    progress: bool = True,
) -> Tuple[ShardIndex, RequestStats]:
    """Index the shards ``spec`` stands for (as :func:`~torchdata_s3ext.list_shards` lists them), write the
    index to ``out`` (default: :func:`default_index_url`), and return it with the S3 requests it took."""
    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    before = process_stats().snapshot()
    urls = list_shards(spec, config=config)
    records = []
    with tqdm(total=len(urls), unit="shard", desc=f"indexing {spec}", disable=not progress) as bar:
        for record in scan_shards(urls, config, jobs=jobs, full_read=full_read):
            records.append(record)
            bar.update(1)
    index = write_shard_index(out or default_index_url(spec), records, config)
    return index, process_stats().snapshot() - before
