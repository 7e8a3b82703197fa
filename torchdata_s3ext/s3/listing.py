"""Turn a shard spec (brace pattern, glob pattern, folder, single shard, or a list of them) into a sorted list of
shard URLs, by one rule for S3 and local paths alike:

- a ``pipe:COMMAND`` spec (webdataset's) is one shard, taken as it is: never listed, and its braces and
  wildcards are the shell's (unlike webdataset, which expands braces in it: write such a list in Python);
- a spec ending in ``.json`` is a shard index (``index.json``, as ``ShardWriter`` and ``torchdata-s3ext index``
  write it): its shards, in its order, read without a LIST request;
- a spec with ``{a..b}`` braces names its shards (webdataset's brace patterns), unchecked;
- a spec with ``*``, ``?`` or ``[...]`` is a glob pattern over the keys (``*`` and ``?`` stay within one path
  segment, ``**`` crosses them), listed under the part before the first wildcard;
- a spec whose name ends in a shard suffix is that one shard, unchecked (opening it reports a missing one);
- anything else is a folder: ``s3://bkt/train`` means ``s3://bkt/train/``, never ``s3://bkt/trainval/``, and
  every shard under it, in subfolders too, is listed.

Shard suffixes are matched without regard to case. Keys that look like shards of another suffix than the ones
asked for (``.tar.gz`` when ``suffix=".tar"``) are reported in a warning, never dropped in silence.
"""
import os
import re
import warnings
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from .._config import S3Config
from .client.botocore_errors import botocore_errors_translated
from .client.clients import boto3_client
from .client.retry import call_with_retries
from .shard_index import is_index_url, read_shard_index
from .url import is_pipe_url, is_s3_url, local_path, parse_s3_url, pipe_command

__all__ = ["SHARD_SUFFIXES", "expand_braces", "list_shards"]

ShardSpec = Union[str, Sequence[str]]
Suffixes = Union[str, Sequence[str], None]

#: what a shard's name ends in by default: tar, and the compressed tars that ``load_from_tar()`` and
#: ``load_wds_shards()`` read
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_WILDCARDS = re.compile(r"[*?\[]")


def expand_braces(pattern: str) -> List[str]:
    """Every name a webdataset brace pattern stands for (``shard-{000000..000009}.tar``), in order."""
    try:
        import braceexpand
    except ImportError as error:  # installed with webdataset; named here so a bare install says what is missing
        raise ModuleNotFoundError("brace patterns need the `braceexpand` package: pip install braceexpand") from error
    return list(braceexpand.braceexpand(pattern))


def _suffixes(suffix: Suffixes) -> Tuple[str, ...]:
    chosen = SHARD_SUFFIXES if suffix is None else (suffix,) if isinstance(suffix, str) else tuple(suffix)
    if not chosen or not all(isinstance(one, str) and one for one in chosen):
        raise ValueError(f"suffix must be a non-empty string or a sequence of them, got {suffix!r}")
    return tuple(one.lower() for one in chosen)


def _ends_with(name: str, suffixes: Tuple[str, ...]) -> bool:
    return name.lower().endswith(suffixes)


def _glob_regex(pattern: str) -> "re.Pattern[str]":
    """``pattern`` as a regular expression: ``**`` crosses ``/``; ``*``, ``?`` and ``[...]`` stay in a segment."""
    return re.compile(".*".join(_segment_glob(piece) for piece in pattern.split("**")) + r"\Z", re.DOTALL)


def _segment_glob(piece: str) -> str:
    """One piece of a pattern (no ``**``) as a regular expression in which wildcards stay within a segment."""
    out, index = [], 0
    while index < len(piece):
        char = piece[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = piece.find("]", index + 2 if piece[index + 1:index + 2] in ("!", "]") else index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = piece[index + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body}]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


class _Listed:
    """The names under one folder or pattern: the shards, and how many shard-like names another suffix had."""

    def __init__(self) -> None:
        self.shards: List[str] = []
        self.other_suffixes: List[str] = []

    def add(self, url: str, name: str, suffixes: Tuple[str, ...], pattern: "Optional[re.Pattern[str]]") -> None:
        if pattern is not None and not pattern.match(name):
            return
        if _ends_with(url, suffixes):
            self.shards.append(url)
        elif _ends_with(url, SHARD_SUFFIXES):
            self.other_suffixes.append(url)


def _list_s3(bucket: str, prefix: str, spec: str, suffixes: Tuple[str, ...], pattern: "Optional[re.Pattern[str]]",
             config: S3Config) -> _Listed:
    """The keys under ``prefix``, page by page, each page retried by our loop alone (botocore's retries are
    off); a failure is raised naming ``spec``."""
    listed = _Listed()
    client = boto3_client(config, retries=False)
    token: Optional[str] = None
    while True:
        page = call_with_retries(spec, config.max_attempts, lambda: _list_page(client, bucket, prefix, token, spec, config))
        for entry in page.get("Contents", []):
            listed.add(f"s3://{bucket}/{entry['Key']}", entry["Key"], suffixes, pattern)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return listed


def _list_page(client: Any, bucket: str, prefix: str, token: Optional[str], spec: str, config: S3Config) -> Any:
    """One page of ListObjectsV2 (after ``token``), botocore's errors raised as ours, naming ``spec``."""
    request = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
    with botocore_errors_translated(spec, config):
        return client.list_objects_v2(**request)


def _list_local(folder: str, suffixes: Tuple[str, ...], pattern: "Optional[re.Pattern[str]]") -> _Listed:
    listed = _Listed()
    for directory, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in names:
            path = os.path.join(directory, name)
            listed.add(path, path, suffixes, pattern)
    return listed


def _split_pattern(path: str) -> Tuple[str, Optional[str]]:
    """``(folder to list, pattern)`` for a path: the pattern's fixed folders, and the pattern itself (or ``None``)."""
    wildcard = _WILDCARDS.search(path)
    if wildcard is None:
        return path, None
    return path[: path.rfind("/", 0, wildcard.start()) + 1], path


def _urls_of_one_spec(spec: str, suffixes: Tuple[str, ...], config: S3Config) -> List[str]:
    if not isinstance(spec, str):
        raise TypeError(f"a shard spec is a string (pattern, prefix or folder), got {type(spec).__name__}: {spec!r}")
    if is_pipe_url(spec):
        pipe_command(spec)  # a pipe: without a command fails here, not at its first read
        return [spec]
    if is_index_url(spec):  # a shard index names its shards: no LIST request
        return read_shard_index(spec, config).urls
    if "{" in spec:
        # A brace pattern names its shards; like webdataset we do not check that they exist.
        urls = expand_braces(spec)
        if is_s3_url(spec):
            for url in urls:
                parse_s3_url(url)
        return urls
    wildcard = _WILDCARDS.search(spec) is not None
    if not wildcard and _ends_with(spec, suffixes):
        if is_s3_url(spec):
            parse_s3_url(spec)
        return [spec]
    if is_s3_url(spec):
        bucket, _, path = spec[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"S3 URL needs a bucket (s3://bucket/prefix): {spec!r}")
        prefix, pattern = _split_pattern(path)
        if pattern is None and prefix and not prefix.endswith("/"):
            prefix += "/"  # a folder, never a prefix of other folders' names
        listed = _list_s3(bucket, prefix, spec, suffixes, _glob_regex(pattern) if pattern else None, config)
    else:
        path = local_path(spec)
        folder, pattern = _split_pattern(path)
        if pattern is None and not os.path.isdir(path):
            return []
        listed = _list_local(folder or ".", suffixes, _glob_regex(pattern) if pattern else None)
    if listed.other_suffixes:
        warnings.warn(
            f"{spec!r}: skipped {len(listed.other_suffixes)} shard-like names not ending in "
            f"{' or '.join(suffixes)} (e.g. {listed.other_suffixes[0]!r}); pass suffix= to include them",
            stacklevel=3,
        )
    return sorted(listed.shards)


def list_shards(spec: ShardSpec, *, suffix: Suffixes = None, config: Optional[S3Config] = None, **config_fields: Any) -> List[str]:
    """The shard URLs a spec stands for: deterministic, so every rank and worker sees the same list.

    Args:
        spec: a brace pattern as webdataset writes them (``s3://bkt/train/shard-{000000..000999}.tar``), a glob
            pattern (``s3://bkt/train/shard-*.tar``), a folder (``s3://bkt/train``: every shard under
            ``train/``, however many pages; not ``trainval/``), a single shard (``s3://bkt/train/x.tar``), each
            on S3 or local (a path or ``file://`` URL), a ``pipe:COMMAND`` (one shard, as it is), or a list of
            these (see this module's rules)
        suffix: what a shard's name ends in (a string or several; case does not matter); ``None``: any of
            ``SHARD_SUFFIXES`` (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``)
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
    suffixes = _suffixes(suffix)
    resolved = S3Config.merged(config, **config_fields).resolved()
    urls: List[str] = []
    seen = set()
    for one_spec in specs:
        found = _urls_of_one_spec(one_spec, suffixes, resolved)
        if not found:
            raise ValueError(f"no shards found for {one_spec!r} (looking for names ending in {' or '.join(suffixes)})")
        for url in found:
            if url in seen:
                raise ValueError(f"shard {url!r} is listed twice (spec {one_spec!r}); each shard must appear once")
            seen.add(url)
            urls.append(url)
    if not urls:
        raise ValueError(f"no shards found for {spec!r}: the list of specs is empty")
    return urls
