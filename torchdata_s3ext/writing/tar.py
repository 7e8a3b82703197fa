"""A sample -> its tar members' bytes, as ``webdataset.TarWriter`` writes them, with every size known up front.

The members are ``KEY.FIELD`` for each field not starting with ``_`` (``__key__`` names the sample, other
``_`` fields are not written), in sorted field order; headers in PAX format with mode ``0o444``, owner and
group ``bigdata``, uid and gid 0. An archive ends with two zero blocks and zeros up to a multiple of 10240
bytes (tar's record), as ``tarfile`` closes a stream. One difference: webdataset stamps each member with the
float ``time.time()``, which costs a PAX header (1 KiB) per member; the mtime here is whole seconds, so a
member has a plain header unless its name needs one (over 100 characters, or not ASCII). With the same
integer ``mtime``, a shard here and ``webdataset.TarWriter(..., mtime=mtime)``'s are the same bytes.

Each member must read back as the sample and field it came from, by the readers' rule
(:func:`~torchdata_s3ext.samples.grouping.split_member_name`), so a key or field that would be read as
another is a ``ValueError`` naming it, before anything is written.
"""
import posixpath
import tarfile
import time
from typing import Any, List, Mapping, NamedTuple, Optional, Tuple

from ..samples.grouping import split_member_name
from .fields import encode_field

__all__ = ["EncodedSample", "archive_end", "archive_size", "encode_sample"]

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_END_BLOCKS = 2 * BLOCK
#: webdataset's TarWriter defaults
_MODE, _OWNER = 0o444, "bigdata"


class EncodedSample(NamedTuple):
    """A sample ready to write: its members' bytes in order (header, data, padding, ...) and their total."""

    key: str
    chunks: Tuple[Any, ...]
    size: int
    fields: Tuple[str, ...]


def archive_size(members_size: int) -> int:
    """The bytes of a tar holding ``members_size`` bytes of members, once closed (end blocks, record padding).

    >>> archive_size(0), archive_size(9216), archive_size(9217)
    (10240, 10240, 20480)
    """
    return -(-(members_size + _END_BLOCKS) // RECORD) * RECORD


def archive_end(members_size: int) -> bytes:
    """What closes a tar after ``members_size`` bytes of members."""
    return bytes(archive_size(members_size) - members_size)


def _member_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = _MODE
    info.uname = info.gname = _OWNER
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a sample's __key__ must be a str, got {type(key).__name__}: {key!r}")
    if not key or "\0" in key:
        raise ValueError(f"a sample's __key__ must be a non-empty string without NUL, got {key!r}")
    if key.startswith("/") or ".." in key.split("/") or posixpath.normpath(key) != key:
        raise ValueError(f"sample key {key!r} is not a plain relative path (readers would name it otherwise): "
                         "no leading '/', '.', '..' or '//' parts, no trailing '/'")
    return key


def _check_member(key: str, field: str) -> str:
    """``KEY.FIELD``, once it is sure to read back as sample ``key``, field ``field`` (lower-cased)."""
    if not isinstance(field, str):
        raise TypeError(f"sample {key!r}: a field name must be a str, got {type(field).__name__}: {field!r}")
    if not field or "\0" in field:
        raise ValueError(f"sample {key!r}: a field name must be a non-empty string without NUL, got {field!r}")
    member_name = f"{key}.{field}"
    if split_member_name(member_name) != (key, field.lower()):
        read_as = split_member_name(member_name)
        raise ValueError(
            f"sample {key!r}, field {field!r}: member {member_name!r} would be read as "
            + (f"sample {read_as[0]!r}, field {read_as[1]!r}" if read_as else "no sample at all")
            + " (a key's file name must hold no dot, a field no '/')"
        )
    return member_name


def encode_sample(sample: Mapping[str, Any], mtime: Optional[int] = None) -> EncodedSample:
    """The members of ``sample`` (``{"__key__": key, field: value, ...}``), encoded (see ``fields``).

    ``mtime``: the members' modification time in whole seconds (``None``: now).

    Raises:
        ValueError, TypeError: naming the sample's key and the field: no ``__key__``, no field to write, a key
            or field that would read back as another, a value that has no encoding
    """
    if not isinstance(sample, Mapping):
        raise TypeError(f"a sample is a dict of fields with a '__key__', got {type(sample).__name__}")
    if "__key__" not in sample:
        raise ValueError(f"a sample needs a '__key__' (its name in the shard); it has {sorted(sample)}")
    key = _check_key(sample["__key__"])
    stamp = int(time.time() if mtime is None else mtime)
    chunks: List[Any] = []
    fields: List[str] = []
    size = 0
    names = [name for name in sample if not (isinstance(name, str) and name.startswith("_"))]
    member_names = {name: _check_member(key, name) for name in names}  # each a str that reads back, before sorting
    for field in sorted(names):
        member_name = member_names[field]
        try:
            data = encode_field(field, sample[field])
        except (TypeError, ValueError) as error:
            raise type(error)(f"sample {key!r}, field {field!r}: {error}") from error
        length = data.nbytes if isinstance(data, memoryview) else len(data)
        header = _member_header(member_name, length, stamp)
        chunks += [header, data, bytes(-length % BLOCK)]
        size += len(header) + length + (-length % BLOCK)
        fields.append(field)
    if not fields:
        raise ValueError(f"sample {key!r} has no field to write (fields starting with '_' are not written)")
    return EncodedSample(key, tuple(chunks), size, tuple(fields))
