"""Turn a shard spec (brace pattern, S3 prefix, local folder, or a list of them) into a sorted list of shard URLs."""
import os
from typing import Any, Iterable, List, Optional, Sequence, Union

from .._config import S3Config
from .clients import boto3_client
from .errors import botocore_errors_translated
from .url import is_s3_url, local_path, parse_s3_url

__all__ = ["list_shards", "expand_braces"]

ShardSpec = Union[str, Sequence[str]]


def expand_braces(pattern: str) -> List[str]:
    """Every name a webdataset brace pattern stands for (``shard-{000000..000009}.tar``), in order."""
    try:
        import braceexpand
    except ImportError as error:  # installed with webdataset; named here so a bare install says what is missing
        raise ModuleNotFoundError("brace patterns need the `braceexpand` package: pip install braceexpand") from error
    return list(braceexpand.braceexpand(pattern))


def _list_s3_prefix(url: str, suffix: str, config: S3Config) -> List[str]:

    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"S3 URL needs a bucket (s3://bucket/prefix): {url!r}")
    paginator = boto3_client(config).get_paginator("list_objects_v2")
    with botocore_errors_translated(url, config):
        return [
            f"s3://{bucket}/{entry['Key']}"
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
            if entry["Key"].endswith(suffix)
        ]


def _list_local(spec: str, suffix: str) -> List[str]:
    path = local_path(spec)
    if os.path.isdir(path):
        return [os.path.join(path, name) for name in os.listdir(path) if name.endswith(suffix)]
    return [spec] if os.path.isfile(path) else []


def _urls_of_one_spec(spec: str, suffix: str, config: S3Config) -> List[str]:
    if not isinstance(spec, str):
        raise TypeError(f"a shard spec is a string (pattern, prefix or folder), got {type(spec).__name__}: {spec!r}")
    if "{" in spec:
        # A brace pattern names its shards; like webdataset we do not check that they exist.
        urls = expand_braces(spec)
        if is_s3_url(spec):
            for url in urls:
                parse_s3_url(url)
        return urls
    if is_s3_url(spec):
        if spec.endswith(suffix):
            parse_s3_url(spec)
            return [spec]
        return sorted(_list_s3_prefix(spec, suffix, config))
    return sorted(_list_local(spec, suffix))


def list_shards(spec: ShardSpec, *, suffix: str = ".tar", config: Optional[S3Config] = None, **config_fields: Any) -> List[str]:
    """The shard URLs a spec stands for: deterministic, so every rank and worker sees the same list.

    Args:
        spec: a brace pattern as webdataset writes them (``s3://bkt/train/shard-{000000..000999}.tar``), an S3
            prefix (``s3://bkt/train/``: every key under it ending in ``suffix``, however many pages), a single
            ``s3://`` URL ending in ``suffix``, a local folder or file (or ``file://`` URL), or a list of these
        suffix: which keys or files of a prefix or folder are shards
        config: how to reach S3 for prefix listings; ``None`` reads the standard ``AWS_*`` variables
        config_fields: any :class:`S3Config` field (``endpoint_url=...``, ``anonymous=True``, ...), laid over
            ``config`` where not ``None``; another keyword raises ``TypeError`` naming it

    Returns:
        The URLs of each spec (a prefix's or folder's sorted), specs in the order given.

    Raises:
        ValueError: naming the spec when it stands for no shard, or naming a shard listed twice.

    Example:
        >>> list_shards("s3://bkt/train/shard-{000000..000002}.tar")
        ['s3://bkt/train/shard-000000.tar', 's3://bkt/train/shard-000001.tar', 's3://bkt/train/shard-000002.tar']
    """
    specs: Iterable[str] = [spec] if isinstance(spec, str) else list(spec)
    resolved = S3Config.merged(config, **config_fields).resolved()
    urls: List[str] = []
    seen = set()
    for one_spec in specs:
        found = _urls_of_one_spec(one_spec, suffix, resolved)
        if not found:
            raise ValueError(f"no shards found for {one_spec!r} (looking for names ending in {suffix!r})")
        for url in found:
            if url in seen:
                raise ValueError(f"shard {url!r} is listed twice (spec {one_spec!r}); each shard must appear once")
            seen.add(url)
            urls.append(url)
    if not urls:
        raise ValueError(f"no shards found for {spec!r}: the list of specs is empty")
    return urls
