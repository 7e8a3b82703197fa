"""Write the article's synthetic WebDataset (random RGB PNG image + random uint8 PNG label per sample) to a
local folder or to S3 with its index, shards in parallel, each shard streamed sample by sample so memory stays
flat."""
import concurrent.futures
import dataclasses
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

from .._config import S3Config
from ..s3.url import is_s3_url, local_path, parse_s3_url
from ..testing import seed_samples
from ..testing._shards import Sample
from ..writing.index import ShardRecord, index_url_beside, write_shard_index
from ..writing.upload import MAX_PARTS
from ..writing.writer import DEFAULT_PART_SIZE, ShardWriter

__all__ = ["DatasetSpec", "shard_name", "shard_urls", "write_dataset", "upload_shards"]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How many shards, how big, and from which seed; ``image_size=1024`` gives the article's ~420 MB shards."""

    num_shards: int = 4
    samples_per_shard: int = 100
    image_size: int = 1024
    num_classes: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_shards", "samples_per_shard", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.num_classes <= 256:
            raise ValueError(f"num_classes must be between 1 and 256 (labels are uint8), got {self.num_classes}")

    @property
    def num_samples(self) -> int:
        return self.num_shards * self.samples_per_shard

    def shard_samples(self, shard_index: int) -> Iterator[Sample]:
        """The samples of one shard, made lazily; keys run on across shards (``sample_00000100`` ...)."""
        return seed_samples(
            self.samples_per_shard, image_size=self.image_size, num_classes=self.num_classes, seed=self.seed,
            first_index=shard_index * self.samples_per_shard,
        )


def shard_name(shard_index: int) -> str:
    return f"shard-{shard_index:06d}.tar"


def _join(dest: str, name: str) -> str:
    return dest.rstrip("/") + "/" + name if is_s3_url(dest) else os.path.join(local_path(dest), name)


def shard_urls(dest: str, num_shards: int) -> List[str]:
    """The shard URLs (or paths) that :func:`write_dataset` writes under ``dest``."""
    return [_join(dest, shard_name(index)) for index in range(num_shards)]


def _write_shards(pattern: str, spec: DatasetSpec, shard_indexes: range, config: S3Config,
                  on_sample: Callable[[], None]) -> Dict[int, ShardRecord]:
    """Shards ``shard_indexes`` of ``spec``, in order, through one writer: each full at ``samples_per_shard``."""
    with ShardWriter(pattern, MAX_PARTS * DEFAULT_PART_SIZE, spec.samples_per_shard, shard_numbers=iter(shard_indexes),
                     write_index=False, config=config) as writer:
        for shard_index in shard_indexes:
            for key, fields in spec.shard_samples(shard_index):
                writer.write({"__key__": key, **fields})
                on_sample()
    return writer.shards_by_number


def _upload_file(client: Any, path: str, url: str) -> None:
    location = parse_s3_url(url)
    client.upload_file(path, location.bucket, location.key)


def upload_shards(paths: List[str], dest: str, config: Optional[S3Config] = None, jobs: int = 2) -> List[str]:
    """Upload local shard files to ``dest`` (``s3://bucket/prefix``) under their own names, ``jobs`` at once."""
    from ..s3.client.clients import boto3_client

    client = boto3_client((config or S3Config()).resolved())
    urls = [dest.rstrip("/") + "/" + os.path.basename(path) for path in paths]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(_upload_file, client, path, url) for path, url in zip(paths, urls)]:
            future.result()
    return urls


def _check_bucket(dest: str, client: Any, config: S3Config) -> None:
    """Raise, naming the bucket, when ``dest``'s bucket is missing, denied or unreachable (a LIST of at most one
    key), so a mistyped destination fails before any shard is generated rather than at the first upload."""
    from ..s3.client.botocore_errors import botocore_errors_translated

    bucket_url = "s3://" + dest[len("s3://"):].partition("/")[0]
    if bucket_url == "s3://":
        raise ValueError(f"S3 URL needs a bucket (s3://bucket/prefix): {dest!r}")
    with botocore_errors_translated(bucket_url, config):
        client.list_objects_v2(Bucket=bucket_url[len("s3://"):], MaxKeys=1)


def write_dataset(
    dest: str, spec: DatasetSpec, config: Optional[S3Config] = None, jobs: int = 2, progress: bool = True,
) -> List[str]:
    """Write ``spec``'s shards (``shard-000000.tar`` ...) and their ``index.json`` under ``dest`` (a folder or
    ``s3://bucket/prefix``), streamed by :class:`~torchdata_s3ext.writing.ShardWriter`.

    ``jobs`` writers at once, writer ``j`` making shards ``j``, ``j + jobs``, ... one sample at a time; returns
    the shard URLs (or paths) in order.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    resolved = (config or S3Config()).resolved()
    if is_s3_url(dest):
        from ..s3.client.clients import boto3_client

        _check_bucket(dest, boto3_client(resolved), resolved)
    pattern = _join(dest.replace("%", "%%"), "shard-%06d.tar")

    from tqdm.auto import tqdm

    lock = threading.Lock()
    with tqdm(total=spec.num_samples, unit="sample", desc=f"writing {dest}", disable=not progress) as bar:

        def on_sample() -> None:
            with lock:
                bar.update(1)

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_write_shards, pattern, spec, range(first, spec.num_shards, jobs), resolved, on_sample)
                       for first in range(min(jobs, spec.num_shards))]
        shards: Dict[int, ShardRecord] = {}
        for future in futures:
            shards.update(future.result())
    write_shard_index(index_url_beside(pattern), [shards[number] for number in sorted(shards)], resolved)
    return [shards[number].url for number in sorted(shards)]
