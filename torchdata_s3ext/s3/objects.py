"""One HEAD of an object, through boto3, for the backends whose own client tells neither its size nor its
version before reading (the AWS CLI, torchdata's native handler): a 404 is told apart as a missing bucket or a
missing key, since a HEAD's answer has no body and so no code says which."""
from typing import NamedTuple, Optional

from .._config import S3Config
from .clients import boto3_client
from .errors import botocore_errors_translated, translate_client_error
from .url import parse_s3_url

__all__ = ["ObjectHead", "head_object"]


class ObjectHead(NamedTuple):
    size: int
    #: the version's ETag, as S3 gives it (quoted), for ``If-Match``
    etag: str
    #: the content's MD5 (hex) when the ETag is one: a single-part upload without SSE-KMS or SSE-C
    content_md5: Optional[str] = None


def head_object(url: str, config: S3Config) -> ObjectHead:
    """The object's size and ETag; ``FileNotFoundError`` saying whether the bucket or the key is missing."""
    from botocore.exceptions import ClientError

    from .backends._boto3 import _plain_md5

    location = parse_s3_url(url)
    client = boto3_client(config)
    with botocore_errors_translated(url, config):
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key)
            return ObjectHead(head["ContentLength"], head.get("ETag", ""), _plain_md5(head))
        except ClientError as error:
            if str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) != "404":
                raise
            not_found = error
        try:
            client.head_bucket(Bucket=location.bucket)
        except ClientError as error:
            if str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) != "404":
                raise not_found  # the bucket may well exist (HeadBucket denied, say): keep "no such key"
            raise translate_client_error(url, "NoSuchBucket", f"HeadBucket found no bucket {location.bucket!r}") from not_found
        raise not_found
