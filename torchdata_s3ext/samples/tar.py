"""Tar reading: the one reader of shards, and the ``tar`` stage.

:func:`tar_members` reads one shard's stream forward (seekable or not, plain or compressed) into its regular
members, one in memory at a time, each with the bytes it spans in the object. Member names are normalised as
``load_from_tar()`` does (``./a.png`` is ``a.png``); a member outside the shard (``../a.png``, ``/a.png``) is
bad data naming it.

What ``tarfile`` lets through in silence is checked: it ends an archive at the first header it cannot parse
(a bad checksum, a garbage size, a cut header), so here a damaged header is reported where it lies; the
end-of-archive marker must be followed by zeros only, or by another archive (``cat a.tar b.tar``, read on as
``tar --ignore-zeros`` and webdataset do); a negative size, a sparse member, or a size past the end of the
stream is bad data, found without reading or allocating what the header claims. A damaged shard is not
raised but passed on as a :class:`DamagedShard`, after the members before the damage, so that the grouping
keeps the samples before it and the bad-data policy decides.
"""
import bz2
import dataclasses
import gzip
import lzma
import posixpath
import re
import tarfile
import zlib
from typing import IO, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from ..stage import SOURCE, Stage, StateUnavailable
from .positions import ShardSlice
from .tar_format import BLOCK, HeaderProblem, TarInput, padded, read_header

__all__ = ["DamagedShard", "Member", "PairShards", "Shard", "ShardEnd", "TarMembers", "archive_members", "split_inner_path", "tar_members"]


class Member(NamedTuple):
    """A regular member of a shard: its shard (the slice read, a ``str``: the URL), name and bytes, and the
    bytes it spans in the object: ``start``, its first header, ``end``, the next header (``None`` when the
    shard is compressed)."""

    shard: str
    name: str
    data: bytes
    start: Optional[int] = None
    end: Optional[int] = None


@dataclasses.dataclass
class DamagedShard:
    """A damaged shard, as an item after its members before the damage: ``error`` says how (its message
    names the byte); ``member_name`` is the member whose data broke, when known (a sample of another key
    before it is then complete)."""

    shard_url: str
    error: Exception
    member_name: Optional[str] = None


class ShardEnd(NamedTuple):
    """The end of one shard's members (after a damage too), so that the grouping ends the sample it holds
    before the next shard is opened."""

    shard: str


class Shard(NamedTuple):
    """An opened shard: the slice asked for, and its stream (bytes ``slice.start ..`` of the object)."""

    slice: ShardSlice
    stream: IO[bytes]


_COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_DECOMPRESSORS = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}
# What a decompressor raises on bad data (the store's own failures reach us as _StoreFailure).
_BAD_COMPRESSED_DATA = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
_SHARD_AND_MEMBER = re.compile(r"^(.*\.(?:tar|tar\.gz|tgz))/(.+)$", re.IGNORECASE)


class _StoreFailure(Exception):
    """A failure of the store under a decompressor, kept apart from bad compressed data."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _StoreReads:
    """A stream whose read failures come out as :class:`_StoreFailure`, so that a decompressor's ``OSError``
    (bad data) and the store's (a lost connection) are never confused."""

    def __init__(self, stream: IO[bytes], prefix: bytes) -> None:
        self._stream, self._prefix = stream, prefix

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        try:
            return self._stream.read(size)
        except Exception as error:
            raise _StoreFailure(error) from error

    def readable(self) -> bool:
        return True


def _first_block(stream: IO[bytes]) -> bytes:
    pieces: List[bytes] = []
    size = 0
    while size < BLOCK:
        piece = stream.read(BLOCK - size)
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _damage(shard_url: str, message: str, member_name: Optional[str] = None, kind: type = tarfile.ReadError) -> DamagedShard:
    return DamagedShard(shard_url, kind(message), member_name)


def _member_name(shard_url: str, name: str) -> str:
    normalised = posixpath.normpath(name)
    if normalised.startswith("/") or normalised == ".." or normalised.startswith("../"):
        raise ValueError(f"tar member {name!r} is outside shard {shard_url!r} (absolute or '..' member name)")
    return normalised


def tar_members(shard_url: str, stream: IO[bytes], *, base: int = 0, bounded: bool = False) -> Iterator[Union[Member, DamagedShard]]:
    """The regular members of the tar (or compressed tar) in ``stream``, then a :class:`DamagedShard` if it is
    damaged. ``base``: the byte of the object the stream starts at (offsets are the object's). ``bounded``: the
    stream ends before the shard does (a slice), at a member header, with no end-of-archive marker to check.
    The store's failures (``OSError`` from the stream) propagate: they are not bad data."""
    first = _first_block(stream)
    if not first:
        yield _damage(shard_url, "not a tar archive: empty file")
        return
    compression = next((name for magic, name in _COMPRESSIONS if first.startswith(magic)), None)
    if compression is None:
        yield from archive_members(shard_url, TarInput(stream, first), base=base, bounded=bounded)
        return
    if compression not in _DECOMPRESSORS:
        yield _damage(shard_url, f"a {compression}-compressed shard, which is not read: write tar, gzip, bzip2 or xz")
        return
    decompressed = _DECOMPRESSORS[compression](fileobj=_StoreReads(stream, first), mode="rb")
    try:
        for item in archive_members(shard_url, TarInput(decompressed), base=None, bounded=bounded):
            yield item
    except _StoreFailure as failure:
        raise failure.error from None
    except _BAD_COMPRESSED_DATA as error:
        yield DamagedShard(shard_url, tarfile.ReadError(f"bad {compression} data: {error}"))


def archive_members(
    shard_url: str, tar: TarInput, *, base: Optional[int] = 0, bounded: bool = False, single: bool = False,
    read_data: bool = True,
) -> Iterator[Union[Member, DamagedShard]]:
    """The members of the uncompressed archives read from ``tar``, back to back, then a :class:`DamagedShard`
    if one is damaged. ``base``: the object's byte at the stream's start (``None``: offsets unknown);
    ``bounded`` as for :func:`tar_members`; ``single``: stop after the first archive's end-of-archive marker
    and the zeros after it, the next archive (or whatever follows) left unread in ``tar``; ``read_data=False``:
    members come with no data, which is skipped (seeked past where ``tar`` can)."""
    global_pax: Dict[str, str] = {}

    def absolute(offset: int) -> Optional[int]:
        return None if base is None else base + offset

    def shown(offset: int) -> int:  # as messages give it: the object's byte where known, else the stream's
        return offset if base is None else base + offset

    while True:
        at = tar.offset
        try:
            header = read_header(tar, global_pax)
        except HeaderProblem as problem:
            if problem.at == 0 and not base:
                yield _damage(shard_url, f"not a tar archive: its first block is no tar header ({problem})")
            else:
                yield _damage(shard_url, f"damaged member header at byte {shown(problem.at)}: {problem}")
            return
        except EOFError as ended:
            if bounded and tar.offset == at:
                return  # a slice ends at a member header
            where = "inside a member header" if ended.args[0] != at else "before the end-of-archive marker"
            yield _damage(shard_url, f"cut at byte {shown(tar.offset)}, {where}")
            return
        if header is None:
            problem = _after_the_end(tar, at, shown, single)
            if problem == "":
                if single:
                    return
                continue  # another archive follows
            if problem is not None:
                yield _damage(shard_url, problem)
            return
        if not header.regular:
            if tar.skip(padded(header.size)) < padded(header.size):
                yield _damage(shard_url, f"cut at byte {shown(tar.offset)}, inside member {header.name!r}")
                return
            continue
        try:
            name = _member_name(shard_url, header.name)
        except ValueError as error:
            yield DamagedShard(shard_url, error)
            return
        data = tar.read(header.size) if read_data else b""
        arrived = len(data) if read_data else tar.skip(header.size)
        padding = padded(header.size) - header.size
        if arrived < header.size or tar.skip(padding) < padding:
            yield _damage(
                shard_url,
                f"unexpected end of data: member {name!r} (header at byte {shown(header.start)}) holds "
                f"{header.size} bytes, the shard ends at byte {shown(tar.offset)}",
                member_name=name,
            )
            return
        yield Member(shard_url, name, data, absolute(header.start), absolute(tar.offset))


def _after_the_end(tar: TarInput, marker_at: int, shown: Callable[[int], int], single: bool = False) -> Optional[str]:
    """What follows a zero block at ``marker_at``: ``None`` for zeros to the end of the stream; ``""`` when
    another archive follows two zero blocks or more (the reader is then at its first header; with ``single``,
    whatever follows them); else what is wrong."""
    zero_blocks = 1
    while True:
        at = tar.offset
        block = tar.read(BLOCK)
        if not block:
            return None
        rest = block.lstrip(b"\0")
        if not rest:
            zero_blocks += 1
            continue
        if zero_blocks >= 2 and (single or len(block) == BLOCK and _is_header(block)):
            tar.unread(block)
            return ""
        if zero_blocks == 1:
            nonzero = at + len(block) - len(rest)
            return (f"damaged member header at byte {shown(marker_at)}: the archive ends there, but byte "
                    f"{shown(nonzero)} is not zero")
        return f"damaged member header at byte {shown(at)}: neither zeros nor another archive after the end-of-archive marker"


def _is_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def split_inner_path(inner_pathname: str, shard_name: Optional[str]) -> Tuple[str, str]:
    """Split a path as ``load_from_tar()`` names members into ``(shard_url, member_name)``.

    ``load_from_tar()`` names a member ``os.path.normpath(os.path.join(shard_url, member_name))``, which
    turns ``s3://b/k.tar`` into ``s3:/b/k.tar``, so the URL is taken from ``shard_name`` where it is known and
    the member name is what follows it; without it, the path is split after the *last* ``.tar/``,
    ``.tar.gz/`` or ``.tgz/``, and the shard URL is then that normalised path.

    Raises:
        ValueError: the member lies outside the shard, or there is no shard name and no ``.tar/`` in the path

    >>> split_inner_path("s3:/bucket/shard-000000.tar/train/0001.png", "s3://bucket/shard-000000.tar")
    ('s3://bucket/shard-000000.tar', 'train/0001.png')
    """
    if shard_name:
        shard_prefix = posixpath.join(posixpath.normpath(shard_name), "")
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


TarItem = Union[Member, DamagedShard, ShardEnd]


class TarMembers(Stage[TarItem]):
    """The ``tar`` stage: the shards its source opens (:class:`Shard` items) read into their members, each
    shard's followed by a :class:`ShardEnd`.

    Its state goes on after the last member given: the source's state with the shard being read opened again
    from the next member header (a shard source takes ``"reopen"``: slices to open before the rest)."""

    kind = "tar"

    def __init__(self, source: Stage[Shard]) -> None:
        super().__init__(source)
        self._shard: Optional[Shard] = None
        self._members: Optional[Iterator[Union[Member, DamagedShard]]] = None
        self._after_open: Optional[Dict[str, Any]] = None
        self._next_header: Optional[int] = None
        self._damaged = False

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._finish_shard()
        super().reset(state)

    def next(self) -> TarItem:
        if self._members is None:
            self._shard = self.source.next()  # type: ignore[union-attr]  # StopIteration: the epoch's end
            self._after_open = self.source.state()  # type: ignore[union-attr]
            part = self._shard.slice
            self._next_header = part.start
            self._members = tar_members(part, self._shard.stream, base=part.start, bounded=part.end is not None)
        item = next(self._members, None)
        if item is None:
            shard = self._shard.slice  # type: ignore[union-attr]
            self._finish_shard()
            return ShardEnd(shard)
        if isinstance(item, Member):
            self._next_header = item.end
        else:
            self._members, self._damaged = iter(()), True  # a damaged shard ends there
        return item

    def state(self) -> Dict[str, Any]:
        if self._members is None or self._damaged:
            return {"stage": self.kind, SOURCE: self.source.state()}  # type: ignore[union-attr]
        source = dict(self._after_open)  # type: ignore[arg-type]
        part = self._shard.slice  # type: ignore[union-attr]
        if self._next_header is None:  # compressed: offsets unknown, read again from where the slice starts
            again = part
        else:
            again = ShardSlice(part.url, part.shard, self._next_header, part.end, part.first_index, part.from_index, part.wanted)
        source["reopen"] = [again.to_state()] + list(source.get("reopen", ()))
        return {"stage": self.kind, SOURCE: source}

    def close(self) -> None:
        self._finish_shard()
        super().close()

    def reading_of(self, items: Any) -> "TarMembers":
        return TarMembers(self.source.reading_of(items))  # type: ignore[union-attr]

    def _finish_shard(self) -> None:
        if self._members is not None:
            close = getattr(self._members, "close", None)
            if close is not None:
                close()
        if self._shard is not None:
            self._shard.stream.close()
        self._shard = self._members = self._after_open = None
        self._damaged = False


class PairShards(Stage[Shard]):
    """A shard source over ``(url, stream)`` pairs from anywhere (a foreign datapipe): each pair a shard.
    Its streams cannot be opened again, so its state cannot go on mid-shard."""

    kind = "pairs"

    def next(self) -> Shard:
        url, stream = self.source.next()  # type: ignore[union-attr]
        return Shard(ShardSlice.of(str(url)), stream)

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        if state is not None and state.get("reopen"):
            raise StateUnavailable("the shards came as (url, stream) pairs, which cannot be opened again mid-shard")
        super().reset(state)

    def state(self) -> Dict[str, Any]:
        return {"stage": self.kind, SOURCE: self.source.state(), "reopen": []}  # type: ignore[union-attr]
