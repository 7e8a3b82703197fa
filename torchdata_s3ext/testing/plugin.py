"""pytest plugin (entry point ``pytest11``): a real local S3 server and seed-style shards in it.

Fixtures:
    ``s3_server``: moto's S3 server on 127.0.0.1 for the session; while it runs, the ``AWS_ENDPOINT_URL``
        and test-credential variables point every client (and this package) at it.
    ``s3_bucket``: a new, empty bucket on that server for each test; yields its name.
    ``wds_shards``: a factory that writes seed-style shards to a bucket and returns a :class:`ShardSet`.
"""
import uuid
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from ._server import LocalS3Server
from ._shards import ShardSet, seed_samples, tar_bytes

__all__ = ["s3_server", "s3_bucket", "wds_shards"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    with LocalS3Server() as server, pytest.MonkeyPatch.context() as patch:
        for name, value in server.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield server


def _s3_client(server: LocalS3Server):
    import boto3

    return boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_server: LocalS3Server) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    _s3_client(s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def wds_shards(s3_server: LocalS3Server, s3_bucket: str) -> Callable[..., ShardSet]:
    """``wds_shards(num_shards=2, samples_per_shard=4, image_size=16, prefix="train/", empty_shards=(), seed=0)``."""
    client = _s3_client(s3_server)

    def write(
        num_shards: int = 2,
        samples_per_shard: int = 4,
        image_size: int = 16,
        prefix: str = "train/",
        empty_shards: Sequence[int] = (),
        seed: int = 0,
        bucket: Optional[str] = None,
        samples_per_shard_list: Optional[Sequence[int]] = None,
    ) -> ShardSet:
        bucket = bucket or s3_bucket
        counts = list(samples_per_shard_list) if samples_per_shard_list is not None else [samples_per_shard] * num_shards
        shard_set = ShardSet(urls=[], samples={}, keys_by_url={})
        first_index = 0
        for shard_index, count in enumerate(counts):
            count = 0 if shard_index in empty_shards else count
            samples: List[Tuple[str, Dict[str, bytes]]] = list(
                seed_samples(count, image_size=image_size, seed=seed, first_index=first_index)
            )
            first_index += count
            key = f"{prefix}shard-{shard_index:06d}.tar"
            client.put_object(Bucket=bucket, Key=key, Body=tar_bytes(samples))
            url = f"s3://{bucket}/{key}"
            shard_set.urls.append(url)
            shard_set.keys_by_url[url] = [sample_key for sample_key, _ in samples]
            shard_set.samples.update(samples)
        return shard_set

    return write
