"""Fixtures of the writing tests: a client of the test server and what its bucket holds."""
from typing import List

import boto3
import pytest


@pytest.fixture
def s3_client(s3_server):
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url)


@pytest.fixture
def stored(s3_client, s3_bucket):
    """What the bucket shows: ``stored.keys()``, ``stored.body(key)``, ``stored.open_uploads()``."""

    class Stored:
        def keys(self) -> List[str]:
            return [entry["Key"] for entry in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]

        def body(self, key: str) -> bytes:
            return s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()

        def etag(self, key: str) -> str:
            return s3_client.head_object(Bucket=s3_bucket, Key=key)["ETag"]

        def open_uploads(self) -> List[str]:
            return [upload["Key"] for upload in s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])]

    return Stored()
