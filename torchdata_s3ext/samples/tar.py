"""Tar reading: the members of tar shards as ``(shard_url, member_name, data)``, one member in memory.

Members come either from torchdata's ``load_from_tar()`` (:func:`read_members`, whose paths are split back
into shard URL and member name by :func:`split_inner_path`) or straight from a shard's stream
(:func:`tar_members`, read forward in mode ``r|*``). Either way a member name is what ``load_from_tar()``
gives: normalised (``./a.png`` is ``a.png``), and a member outside the shard (``../a.png``, ``/a.png``) is
bad data naming it.

A damaged shard is not raised but passed on, in member order, as a :class:`DamagedShard` item, so that the
grouping can keep the samples before the damage and the bad-data policy can skip it. Both readers check
what ``tarfile`` lets through in silence: it ends an archive at the first header it cannot parse (a bad
checksum, a garbage size, a cut header), so what follows the last member's data must be one whole zero
block and then zeros only, up to the end of the stream; and a member whose data does not lie after the
previous member's (a negative, base-256 size) sends ``tarfile`` back to a header it has read already.
"""
import dataclasses
import os
import re
import tarfile
import zlib
from io import BufferedIOBase
from typing import IO, Any, Callable, Iterable, Iterator, Optional, Tuple, Union

from .positions import ShardCursor

__all__ = ["DamagedShard", "Member", "end_of_archive_problem", "read_members", "split_inner_path", "tar_members"]

Member = Tuple[str, str, bytes]

_SHARD_AND_MEMBER = re.compile(r"^(.*\.(?:tar|tar\.gz|tgz))/(.+)$", re.IGNORECASE)
# What a damaged shard raises while it is read (tarfile reports bad gzip data as ReadError too); a store
# failure (OSError) is not bad data and always propagates.
_DAMAGED_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, ValueError)
_BLOCK = tarfile.BLOCKSIZE
_SCAN_CHUNK = 1 << 16


@dataclasses.dataclass
class DamagedShard:
    """A damaged shard, as an item among its members: ``error`` says how (its message names the byte).

    ``member_name`` is the member whose data broke, when known (a sample of another key before it is
    complete); ``fatal`` means the reader cannot go past this shard (torchdata's ``load_from_tar()`` raised or
    would loop), so the damage raises whatever the policy.
    """

    shard_url: str
    error: Exception
    member_name: Optional[str] = None
    fatal: bool = False


def split_inner_path(inner_pathname: str, shard_name: Optional[str]) -> Tuple[str, str]:
    """Split a path from ``load_from_tar()`` into ``(shard_url, member_name)``.

    ``load_from_tar()`` names a member ``os.path.normpath(os.path.join(shard_url, member_name))``, which
    turns ``s3://b/k.tar`` into ``s3:/b/k.tar``, so the URL is taken from the tar stream's name
    (``shard_name``, set by ``open_s3``) and the member name is what follows it. A stream without a name
    (torchdata's ``FileOpener`` gives none) is split after the *last* ``.tar/``, ``.tar.gz/`` or
    ``.tgz/`` in the path, and the shard URL is then that normalised path.

    Raises:
        ValueError: the member lies outside the shard (an absolute or ``..`` member name), or the
            stream has no name and the path no ``.tar/``

    >>> split_inner_path("s3:/bucket/shard-000000.tar/train/0001.png", "s3://bucket/shard-000000.tar")
    ('s3://bucket/shard-000000.tar', 'train/0001.png')
    """
    if shard_name:
        shard_prefix = os.path.join(os.path.normpath(shard_name), "")
        if not inner_pathname.startswith(shard_prefix):
            raise ValueError(
                f"tar member {inner_pathname!r} is outside shard {shard_name!r} (absolute or '..' member name?)"
            )
        return shard_name, inner_pathname[len(shard_prefix):]
    match = _SHARD_AND_MEMBER.match(inner_pathname)
    if match is None:
        raise ValueError(
            f"cannot tell shard from member in {inner_pathname!r}: the tar stream has no name and the path "
            "has no '.tar/', '.tar.gz/' or '.tgz/'; open shards with open_s3() or name the stream"
        )
    return match.group(1), match.group(2)


def _member_extent(member_stream: Any) -> Optional[Tuple[int, int, Any]]:
    """``(data offset, size, tar stream)`` of a member stream from ``TarFile.extractfile()``, or ``None``.

    Our one use of tarfile's private parts: an ``ExFileObject`` reads through a ``_FileInFile`` (its
    ``raw``) whose ``offset`` and ``size`` are the member's ``TarInfo.offset_data`` and ``size``, and whose
    ``fileobj`` is the stream the ``TarFile`` reads (the shard's own, or tarfile's decompressing or
    forward-only wrapper). A stream of any other kind (not from tarfile) is not checked.
    """
    raw = getattr(getattr(member_stream, "file_obj", member_stream), "raw", None)
    if not all(hasattr(raw, name) for name in ("offset", "size", "fileobj")):
        return None
    return raw.offset, raw.size, raw.fileobj  # type: ignore[union-attr]


def _note_member(cursor: Optional[ShardCursor], data_offset: int, size: int, tar_stream: Any, shard_stream: Any) -> None:
    """Move ``cursor`` past a member: its offsets are the object's when tarfile reads the shard's own stream
    (random access), the stream's when it reads it forward through a plain ``_Stream``, unknown when the
    shard is compressed."""
    if cursor is None:
        return
    if tar_stream is shard_stream:
        cursor.member_read(data_offset, size, relative=False)
    elif getattr(tar_stream, "comptype", None) == "tar":
        cursor.member_read(data_offset, size, relative=True)
    else:
        cursor.member_read(None, size, relative=True)


def _bounded(cursor: Optional[ShardCursor]) -> bool:
    """The shard is read up to a byte before its end: there is no end-of-archive marker to check."""
    return cursor is not None and cursor.slice.end is not None


def _extent_problem(data_offset: int, size: int, previous_data_end: int) -> Optional[str]:
    if size < 0:
        return f"damaged member header at byte {data_offset - _BLOCK}: negative size {size}"
    if data_offset < previous_data_end + _BLOCK:
        return (
            f"damaged member header at byte {data_offset - _BLOCK}: its data does not follow the previous "
            f"member's, which ends at byte {previous_data_end}"
        )
    return None


def _first_nonzero_byte(stream: Any) -> Optional[int]:
    """How many bytes from the stream's position to its first non-zero byte; reads no further than that."""
    scanned = 0
    while True:
        chunk = stream.read(_SCAN_CHUNK)
        if not chunk:
            return None
        rest = chunk.lstrip(b"\0")
        if rest:
            return scanned + len(chunk) - len(rest)
        scanned += len(chunk)


def end_of_archive_problem(tar_stream: Any, data_end: int, rewind: bool) -> Optional[str]:
    """What is wrong after the last member of a tar that ``tarfile`` has read to its end, or ``None``.

    ``tar_stream`` is the ``TarFile``'s stream, just after the block ``tarfile`` took for the end of the
    archive; ``data_end`` is where the last regular member's data ends. What follows must be one whole zero
    block, then zeros only. ``rewind``: the stream seeks cheaply (the shard's own, uncompressed), so that
    block is read again; a forward-only stream is checked from where it stands, which misses a damaged last
    header followed by zeros only (an empty last member).
    """
    position = tar_stream.tell()
    if position % _BLOCK or position < -(-data_end // _BLOCK) * _BLOCK + _BLOCK:
        return f"cut at byte {position}, inside a member header or before the end-of-archive marker"
    header_offset = position - _BLOCK
    if rewind:
        tar_stream.seek(header_offset)
    nonzero = _first_nonzero_byte(tar_stream)
    if nonzero is None:
        return None
    nonzero_offset = (header_offset if rewind else position) + nonzero
    if nonzero_offset == header_offset:
        return f"damaged member header at byte {header_offset}"
    return f"damaged member header at byte {header_offset}: the archive ends there, but byte {nonzero_offset} is not zero"


def _damage(shard_url: str, problem: str, cause: Optional[BaseException] = None, **details: Any) -> DamagedShard:
    error = tarfile.ReadError(problem)
    error.__cause__ = cause
    return DamagedShard(shard_url, error, **details)


def _tail_damage(shard_url: str, member_stream: Any, data_end: int, shard_stream: Any) -> Optional[DamagedShard]:
    """The damage after a shard's last member (read through ``member_stream``), if any."""
    extent = _member_extent(member_stream)
    if extent is None or _bounded(getattr(shard_stream, "shard_cursor", None)):
        return None
    tar_stream = extent[2]
    try:
        seekable = tar_stream is shard_stream and tar_stream.seekable()
        problem = end_of_archive_problem(tar_stream, data_end, rewind=seekable)
    except _DAMAGED_TAR_ERRORS as error:
        return DamagedShard(shard_url, error)
    return _damage(shard_url, problem) if problem else None


@dataclasses.dataclass
class _Latest:
    """The latest member of a shard, kept open so that torchdata does not close the shard before its tail is
    checked; or, after its data broke, the damage (reported once the next shard shows the reader goes on)."""

    shard_stream: Any
    shard_url: str
    member_stream: Any
    data_end: int
    damage: Optional[DamagedShard] = None

    def finish(self) -> Optional[DamagedShard]:
        try:
            if self.damage is None:
                self.damage = _tail_damage(self.shard_url, self.member_stream, self.data_end, self.shard_stream)
            return self.damage
        finally:
            if self.member_stream is not None:
                self.member_stream.close()


def _no_url() -> Optional[str]:
    return None


def read_members(
    pairs: Iterable[Tuple[str, BufferedIOBase]], opened_url: Callable[[], Optional[str]] = _no_url
) -> Iterator[Tuple[Any, Union[Member, DamagedShard]]]:
    """Turn ``load_from_tar()`` pairs into ``(shard stream, member)`` with members ``(shard_url, member_name,
    data)``, or ``(shard stream, DamagedShard)``, reading each member whole before the next one.

    The latest member stays open until the next pair arrives (closing a shard's last member lets
    ``load_from_tar()`` close the shard), so that the shard's tail can then be checked. An error of
    ``load_from_tar()`` ends it: it is passed on as a fatal :class:`DamagedShard` of the latest shard if that
    one's tail is damaged, else of the next shard, whose URL is ``opened_url()`` (what ``open_s3`` opened last).
    """
    latest: Optional[_Latest] = None
    source = iter(pairs)
    while True:
        try:
            inner_pathname, member_stream = next(source)
        except StopIteration:
            break
        except _DAMAGED_TAR_ERRORS as error:
            damage = latest.finish() if latest is not None else None
            if damage is None:
                after = f"<unknown: the shard after {latest.shard_url}>" if latest is not None else "<unknown>"
                yield object(), DamagedShard(opened_url() or after, error, fatal=True)
            else:
                damage.fatal = True
                yield latest.shard_stream, damage  # type: ignore[union-attr]
            return
        shard_stream = getattr(member_stream, "parent_stream", None)
        if latest is not None and latest.shard_stream is not shard_stream:
            damage = latest.finish()
            if damage is not None:
                yield latest.shard_stream, damage
            latest = None
        if latest is not None and latest.damage is not None:
            member_stream.close()  # the rest of a damaged shard
            continue
        shard_name = getattr(shard_stream, "name", None)
        extent = _member_extent(member_stream)
        data_end = latest.data_end if latest is not None else 0
        if latest is not None:
            latest.member_stream.close()
        try:
            shard_url, member_name = split_inner_path(inner_pathname, shard_name)
        except ValueError as error:
            if not shard_name:
                member_stream.close()
                raise
            latest = _Latest(shard_stream, shard_name, member_stream, data_end, DamagedShard(shard_name, error))
            continue
        problem = extent and _extent_problem(extent[0], extent[1], data_end)
        if problem:
            member_stream.close()
            yield shard_stream, _damage(shard_url, problem, fatal=True)  # tarfile would loop over it
            return
        latest = _Latest(shard_stream, shard_url, member_stream, extent[0] + extent[1] if extent else 0)
        try:
            data = member_stream.read()
        except _DAMAGED_TAR_ERRORS as error:
            latest.damage = DamagedShard(shard_url, error, member_name=member_name)
            continue
        if extent:
            _note_member(getattr(shard_stream, "shard_cursor", None), extent[0], extent[1], extent[2], shard_stream)
        yield shard_stream, (shard_url, member_name, data)
    if latest is not None:
        damage = latest.finish()
        if damage is not None:
            yield latest.shard_stream, damage


def tar_members(
    shard_url: str, tar_stream: IO[bytes], archive_end: Optional[Callable[[int, int], Optional[str]]] = None,
    cursor: Optional[ShardCursor] = None,
) -> Iterator[Union[Member, DamagedShard]]:
    """Expand one tar (or compressed tar) stream into ``(shard_url, member_name, data)``, regular files only,
    then a :class:`DamagedShard` if the shard is damaged (not a tar, cut short, a damaged header, a member
    outside the shard), after the members before the damage.

    The stream is read forward only (mode ``r|*``), each member whole before the next header, and finished
    members are forgotten, so memory holds one member. Member names are normalised as ``load_from_tar()``
    does (``./a.png`` is ``a.png``).

    ``archive_end``: more archives follow in the same stream (``concatenated``). The stream is then read in
    blocks, never past the block ``tarfile`` took for the end, and ``archive_end(position after that block,
    last member's data end)`` says what is wrong there instead of the check for zeros up to the end.

    ``cursor``: moved past each member (see :mod:`.positions`); a slice that ends before the shard's end
    has no end-of-archive marker, and none is looked for.
    """
    member_name: Optional[str] = None  # the member whose data is being read
    try:
        bufsize = tarfile.RECORDSIZE if archive_end is None else _BLOCK
        with tarfile.open(fileobj=tar_stream, mode="r|*", bufsize=bufsize) as tar:
            data_end = 0
            for member in tar:
                if member.isfile():
                    inner_pathname = os.path.normpath(os.path.join(shard_url, member.name))
                    _, name = split_inner_path(inner_pathname, shard_url)
                    member_name = name
                    member_stream = tar.extractfile(member)
                    extent = _member_extent(member_stream)
                    problem = extent and _extent_problem(extent[0], extent[1], data_end)
                    if problem:
                        yield _damage(shard_url, problem)
                        return
                    data = member_stream.read()  # type: ignore[union-attr]
                    data_end, member_name = member.offset_data + member.size, None
                    _note_member(cursor, member.offset_data, member.size, tar.fileobj, tar_stream)
                    yield shard_url, name, data
                tar.members = []  # a streaming TarFile keeps every header it has read otherwise
            if _bounded(cursor):
                problem = None
            elif archive_end is None:
                problem = end_of_archive_problem(tar.fileobj, data_end, rewind=False)
            else:
                problem = archive_end(tar.fileobj.tell(), data_end)
    except _DAMAGED_TAR_ERRORS as error:
        yield DamagedShard(shard_url, error, member_name=member_name)
        return
    if problem:
        yield _damage(shard_url, problem)
