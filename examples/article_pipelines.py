"""The article's pipelines ("Training in PyTorch from Amazon S3"), each written with ``open_s3``.

Every ``get_dataset_*`` below streams the same WebDataset shards through a different client; only the
``backend`` argument changes. Run against the embedded server with a few seed-style shards:

    python examples/article_pipelines.py            # starts a local S3 server itself
    python examples/article_pipelines.py s3://my-bucket/train/shard-{000000..000009}.tar

Where the article used ``groupby`` + ``map`` to pair ``KEY.image`` with ``KEY.label``, ``group_wds_samples``
does it with WebDataset's own key rules, streaming, and ``decode_png_pair`` turns the PNGs into tensors.
"""
import os
import sys
import tempfile
import time
from typing import List

import torch
from torchdata.datapipes.iter import IterableWrapper

import torchdata_s3ext  # noqa: F401  (registers open_s3, group_wds_samples, decode_png_pair)


def _samples(urls: List[str], backend: str, **open_kwargs):
    return (
        IterableWrapper(urls)
        .shuffle()
        .sharding_filter()
        .open_s3(backend=backend, **open_kwargs)
        .load_from_tar()
        .group_wds_samples()
        .shuffle(buffer_size=10)
        .decode_png_pair()
    )


def get_dataset_awscli(urls):
    """The article's ``pipe:aws s3 cp URL -``."""
    return _samples(urls, "awscli")


def get_dataset_boto3(urls):
    """The article's boto3 ``download_fileobj``, but streamed rather than downloaded whole."""
    return _samples(urls, "boto3")


def get_dataset_s3fs(urls):
    """The article's S3Fs ``fs.open`` (no need for the ``spawn`` start method: clients are per process)."""
    return _samples(urls, "fsspec")


def get_dataset_iopath(urls):
    """The article's ``IoPathFileOpener``."""
    return _samples(urls, "iopath")


def get_dataset_s3fileloader(urls):
    """The article's ``S3FileLoader`` (torchdata's native client; whole object in memory)."""
    return _samples(urls, "s3fileloader")


def get_dataset_s3torchconnector(urls):
    """The successor AWS recommends for the S3 plug-in and S3FileLoader."""
    return _samples(urls, "s3torchconnector")


def get_dataset_mounted(paths):
    """The article's SageMaker Fast File Mode: the bucket mounted at a local path (``SM_CHANNEL_TRAINING``)."""
    return _samples(paths, "local")


def main(urls: List[str]) -> None:
    for name, get_dataset in [
        ("awscli", get_dataset_awscli),
        ("boto3", get_dataset_boto3),
        ("fsspec", get_dataset_s3fs),
        ("iopath", get_dataset_iopath),
        ("s3fileloader", get_dataset_s3fileloader),
        ("s3torchconnector", get_dataset_s3torchconnector),
    ]:
        loader = torch.utils.data.DataLoader(get_dataset(urls), batch_size=4, num_workers=2)
        started, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch["__key__"])
        print(f"{name:>18}: {count} samples, {count / (time.perf_counter() - started):7.1f} samples/s")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(list(torchdata_s3ext.list_shards(sys.argv[1])))
    else:
        import boto3

        from torchdata_s3ext.testing import LocalS3Server, seed_samples, tar_bytes

        with LocalS3Server() as server, tempfile.TemporaryDirectory():
            os.environ.update(server.env())
            client = boto3.client("s3")
            client.create_bucket(Bucket="demo-bucket")
            shard_urls = []
            for index in range(4):
                shard = tar_bytes(seed_samples(8, image_size=128, first_index=8 * index))
                client.put_object(Bucket="demo-bucket", Key=f"train/shard-{index:06d}.tar", Body=shard)
                shard_urls.append(f"s3://demo-bucket/train/shard-{index:06d}.tar")
            main(shard_urls)
