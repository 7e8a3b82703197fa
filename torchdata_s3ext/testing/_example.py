"""The bucket README's snippets read, built in any S3 server: ``s3://my-bucket/train/`` and
``s3://my-bucket/damaged/``.

``train/``: :data:`EXAMPLE_SHARDS` shards ``shard-000000.tar`` .. of :data:`EXAMPLE_SAMPLES_PER_SHARD` seed
samples each (``KEY.image`` and ``KEY.label`` PNGs of :data:`EXAMPLE_IMAGE_SIZE` pixels a side), every key
once. ``damaged/``: a good shard of 4 samples, then ``shard-000001.tar`` holding the next 4 but cut inside
its third sample's image: a shard a reader must report (or skip) by its URL. ``serve --example`` and the
README's tests build it with :func:`put_example_dataset`.
"""
import io
import tarfile
from typing import Any, List

from ._shards import seed_samples, tar_bytes

__all__ = ["EXAMPLE_BUCKET", "EXAMPLE_SHARDS", "EXAMPLE_SAMPLES_PER_SHARD", "EXAMPLE_IMAGE_SIZE", "put_example_dataset"]

EXAMPLE_BUCKET = "my-bucket"
EXAMPLE_SHARDS, EXAMPLE_SAMPLES_PER_SHARD, EXAMPLE_IMAGE_SIZE = 4, 8, 16
#: bytes of its image the damaged shard keeps of the sample it is cut in
_CUT_INTO_IMAGE = 100


def _create_bucket(client: Any, bucket: str) -> None:
    try:
        client.create_bucket(Bucket=bucket)
    except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        pass  # a server that made it at start (s3rver, rclone), or a second call


def _cut_in_third_sample(shard: bytes, cut_key: str) -> bytes:
    """``shard`` up to a little way into the image of sample ``cut_key``."""
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        return shard[:tar.getmember(f"{cut_key}.image").offset_data + _CUT_INTO_IMAGE]


def put_example_dataset(client: Any, bucket: str = EXAMPLE_BUCKET) -> List[str]:
    """Put the example's shards in ``bucket`` (made if it is not there) with ``client``, a boto3 S3 client;
    returns their ``s3://`` URLs, ``train/`` first."""
    _create_bucket(client, bucket)
    samples = list(seed_samples(EXAMPLE_SHARDS * EXAMPLE_SAMPLES_PER_SHARD, image_size=EXAMPLE_IMAGE_SIZE))
    objects = {
        f"train/shard-{index:06d}.tar": tar_bytes(samples[index * EXAMPLE_SAMPLES_PER_SHARD:(index + 1) * EXAMPLE_SAMPLES_PER_SHARD])
        for index in range(EXAMPLE_SHARDS)
    }
    objects["damaged/shard-000000.tar"] = tar_bytes(samples[:4])
    objects["damaged/shard-000001.tar"] = _cut_in_third_sample(tar_bytes(samples[4:8]), samples[6][0])
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return [f"s3://{bucket}/{key}" for key in objects]
