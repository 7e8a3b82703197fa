"""The shard index (what ``ShardWriter`` and ``torchdata-s3ext index`` write): one JSON document beside the shards (``index.json``) that gives a reader every shard's URL,
sample count, size and version without a LIST request or a read of any shard.

Its shape is webdataset's ``wids`` shard index (what ``widsindex create`` writes and ``wids.ShardListDataset``
reads), plus our extras per shard::

    {"__kind__": "wids-shard-index-v1", "wids_version": 1,
     "shardlist": [{"url": "shard-000000.tar", "nsamples": 100, "filesize": 419450880,
                    "etag": "\\"9b2cf535f27731c974343645a3985328-50\\"", "fields": ["image.png", "label.png"]},
                   ...]}

``url`` is relative to the index's folder for the shards in it or under it (as wids resolves it; the dataset
can move as a whole), absolute otherwise; ``filesize`` is wids's name for the shard's bytes; ``etag`` is the
object's ETag as S3 gave it (absent for local files), ``md5sum`` the MD5 of a local shard's bytes (wids's field;
an S3 shard has its ETag instead: MD5 runs at about 720 MB/s on one core here, a quarter of a core for a
writer at 200 MB/s) and ``fields`` the fields its samples have, sorted.
"""
import dataclasses
import errno
import json
import re
from typing import Any, Dict, List, Optional, Tuple

from .._config import S3Config
from .client.botocore_errors import botocore_errors_translated
from .client.clients import boto3_client
from .client.retry import call_with_retries
from .url import is_pipe_url, is_s3_url, local_path, parse_s3_url

__all__ = ["INDEX_NAME", "INDEX_KIND", "ShardIndex", "ShardRecord", "index_url_beside", "is_index_url",
           "parse_shard_index", "read_shard_index"]

INDEX_NAME = "index.json"
INDEX_KIND = "wids-shard-index-v1"
#: the largest index read (about 100 bytes a shard: over two million shards)
MAX_INDEX_BYTES = 256 << 20
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """One shard as the index knows it; ``url`` is absolute."""

    url: str
    nsamples: int
    filesize: Optional[int] = None
    etag: Optional[str] = None
    md5sum: Optional[str] = None
    fields: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    """A shard index read from (or written to) ``url``: the shards in order."""

    url: str
    shards: Tuple[ShardRecord, ...]

    @property
    def urls(self) -> List[str]:
        return [shard.url for shard in self.shards]

    @property
    def sample_counts(self) -> List[int]:
        return [shard.nsamples for shard in self.shards]

    @property
    def sizes(self) -> List[Optional[int]]:
        return [shard.filesize for shard in self.shards]

    @property
    def etags(self) -> List[Optional[str]]:
        return [shard.etag for shard in self.shards]

    @property
    def num_samples(self) -> int:
        return sum(self.sample_counts)

    def check(self, url: str, size: int, etag: Optional[str] = None) -> None:
        """Raise ``OSError`` naming ``url`` and the index when the shard at ``url`` has another size or ETag
        than the index says (an ETag is compared only when both are known)."""
        record = next((shard for shard in self.shards if shard.url == url), None)
        if record is None:
            raise ValueError(f"{url} is not a shard of the index {self.url}")
        if (record.filesize is not None and size != record.filesize) or (record.etag and etag and etag != record.etag):
            raise OSError(errno.EIO, f"the shard has {size} bytes, ETag {etag}; the index {self.url} says "
                                     f"{record.filesize} bytes, ETag {record.etag} (rewritten since it was indexed?)", url)

    def to_document(self) -> Dict[str, Any]:
        """The JSON document (see the module's docstring)."""
        return {"__kind__": INDEX_KIND, "wids_version": 1,
                "shardlist": [_entry(shard, _folder(self.url)) for shard in self.shards]}


def _entry(shard: ShardRecord, folder: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"url": _relative(shard.url, folder), "nsamples": shard.nsamples}
    for name in ("filesize", "etag", "md5sum"):
        if getattr(shard, name) is not None:
            entry[name] = getattr(shard, name)
    if shard.fields:
        entry["fields"] = list(shard.fields)
    return entry


def _folder(url: str) -> str:
    """The folder of a URL or path, with its trailing ``/`` (``""`` for a bare file name)."""
    return url[: url.rfind("/") + 1]


def _relative(url: str, folder: str) -> str:
    return url[len(folder):] if folder and url.startswith(folder) else url


def _resolved(name: str, base: str) -> str:
    """A shard's URL from the index: an absolute URL or path as it is, a relative one under ``base``."""
    if "://" in name or name.startswith("/") or is_pipe_url(name):
        return name
    return base + name


def is_index_url(spec: str) -> bool:
    """Whether a shard spec names a shard index (a JSON file): ``.../index.json`` or any ``*.json``."""
    return spec.lower().endswith(".json") and not is_pipe_url(spec)


def index_url_beside(url: str) -> str:
    """The index's URL for shards in ``url``'s folder (a shard, a pattern or the folder itself with ``/``).

    >>> index_url_beside("s3://bkt/train/shard-%06d.tar"), index_url_beside("data/")
    ('s3://bkt/train/index.json', 'data/index.json')
    """
    return _folder(url) + INDEX_NAME


def _problem(index_url: str, where: str, text: str) -> ValueError:
    return ValueError(f"{index_url}: not a valid shard index: {where}{text}")


def _optional(entry: Dict[str, Any], name: str, kind: type, check: Any, index_url: str, where: str) -> Any:
    value = entry.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) or not check(value)):
        raise _problem(index_url, where, f"{name} is {value!r}")
    return value


def _record(entry: Any, base: str, index_url: str, position: int) -> ShardRecord:
    where = f"shardlist[{position}]: "
    if not isinstance(entry, dict):
        raise _problem(index_url, where, f"an entry must be an object, got {entry!r}")
    url, nsamples = entry.get("url"), entry.get("nsamples")
    if not isinstance(url, str) or not url:
        raise _problem(index_url, where, f"url must be a non-empty string, got {url!r}")
    where = f"shardlist[{position}] ({url}): "
    if not isinstance(nsamples, int) or isinstance(nsamples, bool) or nsamples < 0:
        raise _problem(index_url, where, f"nsamples must be an integer >= 0, got {nsamples!r}")
    fields = entry.get("fields", [])
    if not isinstance(fields, list) or not all(isinstance(field, str) for field in fields):
        raise _problem(index_url, where, f"fields must be a list of strings, got {fields!r}")
    return ShardRecord(
        url=_resolved(url, base), nsamples=nsamples,
        filesize=_optional(entry, "filesize", int, lambda size: size >= 0, index_url, where),
        etag=_optional(entry, "etag", str, bool, index_url, where),
        md5sum=_optional(entry, "md5sum", str, _MD5.fullmatch, index_url, where),
        fields=tuple(fields),
    )


def parse_shard_index(index_url: str, document: Any) -> ShardIndex:
    """The :class:`ShardIndex` a JSON document read from ``index_url`` holds; ``ValueError`` naming
    ``index_url`` and the entry at fault when it is not one."""
    if not isinstance(document, dict):
        raise _problem(index_url, "", f"the document must be a JSON object, got {type(document).__name__}")
    if document.get("__kind__", INDEX_KIND) != INDEX_KIND or document.get("wids_version") != 1:
        raise _problem(index_url, "", f"expected __kind__ {INDEX_KIND!r} and wids_version 1, got "
                                      f"{document.get('__kind__')!r} and {document.get('wids_version')!r}")
    if "datasets" in document:
        raise _problem(index_url, "", "sub-datasets ('datasets') are not supported; list their shards in 'shardlist'")
    base = document.get("base", _folder(index_url))
    if not isinstance(base, str):
        raise _problem(index_url, "", f"base must be a string, got {base!r}")
    base = base if not base or base.endswith("/") else base + "/"
    shardlist = document.get("shardlist")
    if not isinstance(shardlist, list) or not shardlist:
        raise _problem(index_url, "", f"shardlist must be a non-empty list, got {shardlist!r}")
    records = tuple(_record(entry, base, index_url, position) for position, entry in enumerate(shardlist))
    seen = set()
    for record in records:
        if record.url in seen:
            raise _problem(index_url, "", f"shard {record.url} is listed twice")
        seen.add(record.url)
    return ShardIndex(index_url, records)


def _read_s3(url: str, config: S3Config) -> bytes:
    location = parse_s3_url(url)
    client = boto3_client(config, retries=False)

    def get() -> bytes:
        with botocore_errors_translated(url, config):
            response = client.get_object(Bucket=location.bucket, Key=location.key)
            if response["ContentLength"] > MAX_INDEX_BYTES:
                response["Body"].close()
                raise ValueError(f"{url}: a shard index of {response['ContentLength']} bytes is more than the "
                                 f"{MAX_INDEX_BYTES} read")
            return response["Body"].read()

    return call_with_retries(url, config.max_attempts, get)


def _read_local(url: str) -> bytes:
    with open(local_path(url), "rb") as index_file:
        data = index_file.read(MAX_INDEX_BYTES + 1)
    if len(data) > MAX_INDEX_BYTES:
        raise ValueError(f"{url}: a shard index of more than {MAX_INDEX_BYTES} bytes")
    return data


def read_shard_index(url: str, config: Optional[S3Config] = None, **config_fields: Any) -> ShardIndex:
    """The shard index at ``url`` (``s3://``, a local path or ``file://``), checked.

    Args:
        url: the index (``s3://bkt/train/index.json``)
        config, config_fields: how to reach S3, as for :func:`~torchdata_s3ext.list_shards`

    Raises:
        FileNotFoundError, PermissionError, OSError: reading it failed (naming ``url``)
        ValueError: naming ``url`` (and the entry at fault): not JSON, or not a shard index
    """
    if is_pipe_url(url):
        raise ValueError(f"a shard index is read from s3:// or a local path, not a pipe: URL: {url!r}")
    resolved = S3Config.merged(config, **config_fields).resolved()
    data = _read_s3(url, resolved) if is_s3_url(url) else _read_local(url)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{url}: not a JSON shard index: {error}") from None
    return parse_shard_index(url, document)
