"""One HEAD of an object, through boto3, for the backends whose own client tells neither its size nor its
version before reading (the AWS CLI, torchdata's native handler): a 404 is told apart as a missing bucket or a
missing key, since a HEAD's answer has no body and so no code says which. Retried by our loop alone (botocore's
own retries are off), so a silent endpoint fails after ``max_attempts`` read timeouts."""
import hashlib
from typing import Any, Callable, NamedTuple, Optional

from ..._config import S3Config
from ..url import parse_s3_url
from .botocore_errors import botocore_errors_translated
from .checksums import ALGORITHMS, checksum_b64
from .clients import boto3_client
from .errors import WrongLength, translate_client_error
from .retry import call_with_retries

__all__ = ["ObjectHead", "check_content", "head_not_found", "head_object", "is_checkable", "plain_md5"]


class ObjectHead(NamedTuple):
    size: int
    #: the version's ETag, as S3 gives it (quoted), for ``If-Match``
    etag: str
    #: the content's MD5 (hex) when the ETag is one: a single-part upload without SSE-KMS or SSE-C
    content_md5: Optional[str] = None
    #: ``(algorithm, base64 value)`` of the full-object checksum S3 keeps (one of
    #: :data:`~.checksums.ALGORITHMS`), when it has one
    checksum: Optional[Any] = None


def head_object(url: str, config: S3Config) -> ObjectHead:
    """The object's size, ETag and checksum; ``FileNotFoundError`` saying whether the bucket or the key is
    missing."""
    return call_with_retries(url, config.max_attempts, lambda: _head_once(url, config))


def _full_object_checksum(head: Any) -> Optional[Any]:
    kind = head.get("ChecksumType")
    multipart = "-" in head.get("ETag", "")
    if kind == "COMPOSITE" or (kind is None and multipart):
        # a checksum of the parts' checksums (a multipart upload that does not say otherwise): not computable
        # from the bytes alone; S3-compatible servers that omit ChecksumType are not trusted with one either
        return None
    return next(((name, head[f"Checksum{name}"]) for name in ALGORITHMS if head.get(f"Checksum{name}")), None)


def _head_once(url: str, config: S3Config) -> ObjectHead:
    from botocore.exceptions import ClientError

    location = parse_s3_url(url)
    client = boto3_client(config, retries=False)
    with botocore_errors_translated(url, config):
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key, ChecksumMode="ENABLED")
        except ClientError as error:
            if _status(error) != "404":
                raise
            raise head_not_found(url, error, lambda: _bucket_missing(client, location.bucket), "HeadBucket")
    return ObjectHead(head["ContentLength"], head.get("ETag", ""), plain_md5(head), _full_object_checksum(head))


def _status(error: Any) -> str:
    return str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _bucket_missing(client: Any, bucket: str) -> bool:
    """Whether HeadBucket says ``bucket`` is missing (any other answer, denied say: it may well exist)."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        return _status(error) == "404"
    return False


def head_not_found(url: str, not_found: BaseException, bucket_missing: Callable[[], bool], how: str) -> BaseException:
    """What a HEAD of ``url`` answered with 404 (``not_found``) means. Its answer has no body, so no code says
    whether the bucket or the key is missing: ``bucket_missing()``, one more request (``how``) made only then,
    tells; a "no such bucket" error is raised from ``not_found``, else ``not_found`` itself (no such key)."""
    if not bucket_missing():
        return not_found
    missing = translate_client_error(url, "NoSuchBucket", f"{how} found no bucket {parse_s3_url(url).bucket!r}")
    missing.__cause__ = not_found
    return missing


def plain_md5(answer: Any) -> Optional[str]:
    """The ETag of a HEAD's or a GET's ``answer`` as an MD5 hex digest when it is one: a single-part upload
    without SSE-KMS or SSE-C."""
    etag = (answer.get("ETag") or "").strip('"')
    encrypted = answer.get("ServerSideEncryption") == "aws:kms" or answer.get("SSECustomerAlgorithm")
    if encrypted or len(etag) != 32 or any(c not in "0123456789abcdef" for c in etag.lower()):
        return None
    return etag.lower()


def is_checkable(head: ObjectHead) -> bool:
    """Whether :func:`check_content` can check the bytes themselves (a checksum this machine computes, or an
    MD5 ETag, to compare)."""
    return _computable_checksum(head) is not None or head.content_md5 is not None


def _computable_checksum(head: ObjectHead) -> Optional[Any]:
    """``head``'s full-object checksum if this machine computes it (see :mod:`.checksums`), else ``None``."""
    if head.checksum is None or checksum_b64(head.checksum[0], b"") is None:
        return None
    return head.checksum


def check_content(url: str, data: bytes, head: ObjectHead) -> None:
    """``WrongLength`` naming ``url`` unless ``data`` has the object's size and matches its full-object
    checksum, else its MD5 ETag, where it has one (see :func:`is_checkable`)."""
    if len(data) != head.size:
        raise WrongLength(f"{url}: received {len(data)} bytes of an object of {head.size}")
    checksum = _computable_checksum(head)
    if checksum is not None:
        algorithm, expected = checksum
        actual = checksum_b64(algorithm, data)
    elif head.content_md5 is not None:
        algorithm, expected, actual = "MD5", head.content_md5, hashlib.md5(data).hexdigest()
    else:
        return
    if actual != expected:
        raise WrongLength(f"{url}: the {len(data)} bytes received do not match the object's {algorithm} "
                          f"({actual}, not {expected})")
