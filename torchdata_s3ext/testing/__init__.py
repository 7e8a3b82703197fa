"""Test helpers for users of torchdata-s3ext: a local S3 server, seed-style shards, and pytest fixtures.

The fixtures (``s3_server``, ``s3_bucket``, ``wds_shards``) are registered automatically as a pytest
plugin when the package is installed; importing this package itself does not need pytest.
"""
from ._server import TEST_CREDENTIALS, LocalS3Server
from ._shards import ShardSet, png_bytes, seed_samples, tar_bytes, write_tar

__all__ = ["LocalS3Server", "ShardSet", "TEST_CREDENTIALS", "png_bytes", "seed_samples", "tar_bytes", "write_tar"]
