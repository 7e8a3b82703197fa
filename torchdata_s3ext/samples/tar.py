"""Tar reading: the one reader of shards, and the ``tar`` stage.

:func:`tar_members` reads one shard's stream forward (seekable or not, plain or compressed) into its regular
members, one in memory at a time, each with the bytes it spans in the object. Member names are normalised as
``load_from_tar()`` does (``./a.png`` is ``a.png``); a member outside the shard (``../a.png``, ``/a.png``) is
bad data naming it.

What ``tarfile`` lets through in silence is checked: it ends an archive at the first header it cannot parse
(a bad checksum, a garbage size, a cut header), so here a damaged header is reported where it lies; the
end-of-archive marker must be followed by zeros only, or by another archive (``cat a.tar b.tar``, read on as
``tar --ignore-zeros`` lists it; webdataset 1.0 stops at the first marker); a negative size, a sparse member,
a size past the end of the stream (at the header where the stream's length is known, else where it ends), or
a member bigger than the process can hold is bad data naming the member, found without reading or allocating
what the header claims. A damaged shard is not
raised but passed on as a :class:`DamagedShard`, after the members before the damage, so that the grouping
keeps the samples before it and the bad-data policy decides.
"""
import dataclasses
import posixpath
import tarfile
from typing import IO, Any, Dict, Iterator, NamedTuple, Optional, Union

from ..stage import SOURCE, Stage, StateUnavailable
from .compressed import BAD_COMPRESSED_DATA, StoreFailure, compression_of, decompressed, first_bytes
from .positions import ShardSlice
from .tar_format import BLOCK, ClaimPastEnd, HeaderProblem, MemberHeader, TarInput, after_the_end, padded, read_header, stream_length

__all__ = ["DamagedShard", "Member", "PairShards", "Shard", "ShardEnd", "TarMembers", "archive_members", "tar_members"]


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
    Where the stream tells its length (it seeks), a header claiming past it is damage found at the header.
    The store's failures (``OSError`` from the stream) propagate: they are not bad data."""
    length = stream_length(stream)
    first = first_bytes(stream, BLOCK)
    if not first:
        yield _damage(shard_url, "not a tar archive: empty file")
        return
    compression = compression_of(first)
    if compression is None:
        yield from archive_members(shard_url, TarInput(stream, first, length), base=base, bounded=bounded)
        return
    tar_stream = decompressed(compression, stream, first)
    if tar_stream is None:
        yield _damage(shard_url, f"a {compression}-compressed shard, which is not read: write tar, gzip, bzip2 or xz")
        return
    try:
        yield from archive_members(shard_url, TarInput(tar_stream), base=None, bounded=bounded)
    except StoreFailure as failure:
        raise failure.error from None
    except BAD_COMPRESSED_DATA as error:
        yield DamagedShard(shard_url, tarfile.ReadError(f"bad {compression} data: {error}"))


class _Offsets(NamedTuple):
    """Offsets in the stream as the object's: ``base`` is the object's byte at the stream's start (``None``:
    not known, as in a compressed shard)."""

    base: Optional[int]

    def absolute(self, offset: int) -> Optional[int]:
        return None if self.base is None else self.base + offset

    def shown(self, offset: int) -> int:
        """As messages give it: the object's byte where known, else the stream's."""
        return offset if self.base is None else self.base + offset


def archive_members(
    shard_url: str, tar: TarInput, *, base: Optional[int] = 0, bounded: bool = False, single: bool = False,
    read_data: bool = True,
) -> Iterator[Union[Member, DamagedShard]]:
    """The members of the uncompressed archives read from ``tar``, back to back, then a :class:`DamagedShard`
    if one is damaged. ``base``: the object's byte at the stream's start (``None``: offsets unknown);
    ``bounded`` as for :func:`tar_members`; ``single``: stop after the first archive's end-of-archive marker
    and the zeros after it, the next archive (or whatever follows) left unread in ``tar``; ``read_data=False``:
    members come with no data, which is skipped (seeked past where ``tar`` can)."""
    offsets = _Offsets(base)
    global_pax: Dict[str, str] = {}
    while True:
        at = tar.offset
        try:
            header = read_header(tar, global_pax)
        except (HeaderProblem, EOFError) as problem:
            damage = _header_damage(shard_url, tar, at, problem, offsets, bounded)
            if damage is not None:
                yield damage
            return
        if header is None:
            after = after_the_end(tar, at, offsets.shown, single)
            if after == "" and not single:
                continue  # another archive follows
            if after:
                yield _damage(shard_url, after)
            return
        item = _member_item(shard_url, tar, header, offsets, read_data)
        if item is not None:
            yield item
            if isinstance(item, DamagedShard):
                return


def _header_damage(
    shard_url: str, tar: TarInput, at: int, problem: Exception, offsets: _Offsets, bounded: bool,
) -> Optional[DamagedShard]:
    """The damage a header starting at ``at`` that could not be read is (``problem``: a :class:`HeaderProblem`,
    or ``EOFError`` where the stream ended); ``None`` where a slice ends, at a member header."""
    if isinstance(problem, ClaimPastEnd):  # found before reading: the message is the one reading would give
        return _damage(shard_url, f"unexpected end of data: member {problem.member_name!r} (header at byte "
                                  f"{offsets.shown(problem.at)}) holds {problem.size} bytes, the shard ends at byte "
                                  f"{offsets.shown(problem.end)}", problem.member_name)
    if isinstance(problem, HeaderProblem):
        if problem.at == 0 and not offsets.base:
            return _damage(shard_url, f"not a tar archive: its first block is no tar header ({problem})")
        return _damage(shard_url, f"damaged member header at byte {offsets.shown(problem.at)}: {problem}",
                       problem.member_name)
    if bounded and tar.offset == at:
        return None
    where = "inside a member header" if problem.args[0] != at else "before the end-of-archive marker"
    return _damage(shard_url, f"cut at byte {offsets.shown(tar.offset)}, {where}")


def _member_item(
    shard_url: str, tar: TarInput, header: MemberHeader, offsets: _Offsets, read_data: bool,
) -> Optional[Union[Member, DamagedShard]]:
    """The member ``header`` heads, read (with no data under ``read_data=False``), or the damage met; ``None``
    for a member that is not a regular file, skipped."""
    if not header.regular:
        if tar.skip(padded(header.size)) < padded(header.size):
            return _damage(shard_url, f"cut at byte {offsets.shown(tar.offset)}, inside member {header.name!r}")
        return None
    try:
        name = _member_name(shard_url, header.name)
    except ValueError as error:
        return DamagedShard(shard_url, error)
    where = f"member {name!r} (header at byte {offsets.shown(header.start)}) holds {header.size} bytes"
    try:
        data = tar.read(header.size) if read_data else b""
    except MemoryError:  # a member bigger than this process may hold is bad data, not the end of the run
        return _damage(shard_url, f"{where}, more than this process can hold in memory", name)
    arrived = len(data) if read_data else tar.skip(header.size)
    padding = padded(header.size) - header.size
    if arrived < header.size or tar.skip(padding) < padding:
        return _damage(shard_url, f"unexpected end of data: {where}, the shard ends at byte {offsets.shown(tar.offset)}", name)
    return Member(shard_url, name, data, offsets.absolute(header.start), offsets.absolute(tar.offset))


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
