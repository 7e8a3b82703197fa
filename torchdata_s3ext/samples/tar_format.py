"""The tar format, read forward from a byte stream: exact reads that count the offset, and member headers.

:class:`TarInput` reads a shard's bytes forward in large reads and never asks the stream for more than it
holds a use for: a member's data comes in pieces of at most :data:`PIECE` bytes, so a header that claims more
than the shard holds costs only the bytes that are really there. :func:`read_header` reads one member's
headers: the 512-byte block (parsed and checksummed by :func:`~.tar_header.parse_block`, as ``tarfile``
does), and before it the extensions that name the member or change its size: GNU long names
(``L``, ``K``) and pax records (``x``, and ``g`` for all members after it). Sparse members (GNU ``S``, pax
``GNU.sparse.*``) are refused: their data is a map of holes that ``tarfile`` would fill with zeros, which a
header can make gigabytes long. Where the stream's length is known (it seeks: a ranged object, a file), a
member whose size field claims more than the bytes left after its header is refused at the header, before
any of it is read; where it is not (a forward-only body, a pipe), reading the claim stops where the stream
ends, so a claim costs at most the bytes that exist.
"""
import io
import tarfile
from typing import IO, Callable, Dict, List, NamedTuple, Optional

from .tar_header import HeaderBlock, parse_block

__all__ = ["BLOCK", "PIECE", "ClaimPastEnd", "HeaderProblem", "MemberHeader", "TarInput", "padded", "read_header", "stream_length",
           "after_the_end", "is_header"]

BLOCK = tarfile.BLOCKSIZE
#: the most bytes asked of the stream at once for a member's data
PIECE = 16 << 20
_READ_AHEAD = 64 << 10
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
#: the most bytes of extension headers (long names, pax records) one member may have
_MAX_EXTENSION = 1 << 20


class HeaderProblem(Exception):
    """A header that cannot be read as one: ``str()`` says why, ``at`` is the byte it starts at, ``member_name``
    the member it names when it could be parsed (a sparse member, a size past the shard's end)."""

    def __init__(self, message: str, at: int, member_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.at = at
        self.member_name = member_name


class ClaimPastEnd(HeaderProblem):
    """A member whose size field claims more bytes than the stream holds after its header: the shard is cut
    there, or the header lies; ``at`` is where the member's first header starts, ``end`` where the stream ends."""

    def __init__(self, member_name: str, size: int, at: int, end: int) -> None:
        super().__init__(f"member {member_name!r} claims {size} bytes, past the end at byte {end}", at, member_name)
        self.size, self.end = size, end


class TarInput:
    """The bytes of ``stream`` read forward, with the offset reached (``offset``, from the stream's start;
    ``prefix``: its first bytes, already read from it).

    Small reads (headers, small members) are served from a read-ahead of at least 64 KiB; a large member is
    its first bytes from the read-ahead and the rest from the stream, joined into one ``bytes``: copied once,
    together, where the stream offers ``read_after(prefix, size)`` (a ranged object's stream does), else
    read, then joined.

    ``size``: the stream's length from its start (see :func:`stream_length`), when it is known: a header may
    not claim past it, and a skip of 64 KiB or more is seeked past, not read (how an index is made from the
    headers alone); a shorter one reads on, taking the next header with it."""

    def __init__(self, stream: IO[bytes], prefix: bytes = b"", size: Optional[int] = None) -> None:
        self._stream = stream
        self._read_after = getattr(stream, "read_after", None)  # looked up once a stream, not once a member
        self._buffer = prefix
        self._position = 0  # in _buffer
        self.offset = 0
        self.size = size
        # The stream's own position of offset 0: seeks are at the stream's offsets (a slice's are the object's).
        self._origin = stream.tell() - len(prefix) if size is not None else 0

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer only where the stream ends."""
        buffered = len(self._buffer) - self._position
        if size <= buffered:
            data = self._buffer[self._position:self._position + size]
            self._position += size
            self.offset += size
            return data
        head = self._buffer[self._position:]
        self._buffer, self._position = b"", 0
        wanted = size - buffered
        if wanted >= _READ_AHEAD and head and wanted <= PIECE and self._read_after is not None:
            data = self._read_after(head, wanted)  # the bytes read ahead and the rest copied once, together
        elif wanted >= _READ_AHEAD:
            pieces = self._pieces(wanted, wanted)
            data = b"".join([head] + pieces) if head or len(pieces) != 1 else pieces[0]
        else:  # a small read: take more, for the headers and members that follow
            chunk = b"".join(self._pieces(wanted, _READ_AHEAD))
            data = head + chunk[:wanted]
            self._buffer, self._position = chunk, min(wanted, len(chunk))
        self.offset += len(data)
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data``, just read, back in front of what comes next."""
        self._buffer = data + self._buffer[self._position:]
        self._position = 0
        self.offset -= len(data)

    def skip(self, size: int) -> int:
        """Read (or seek) past ``size`` bytes; how many there were."""
        buffered = len(self._buffer) - self._position
        if self.size is not None and size > buffered and size >= _READ_AHEAD:  # a short skip reads on, headers and all
            skipped = min(size, self.size - self.offset)
            self._stream.seek(self._origin + self.offset + skipped)
            self._buffer, self._position = b"", 0
            self.offset += skipped
            return skipped
        skipped = 0
        while skipped < size:
            piece = self.read(min(PIECE, size - skipped))
            if not piece:
                break
            skipped += len(piece)
        return skipped

    def _pieces(self, wanted: int, ask: int) -> List[bytes]:
        """At least ``wanted`` bytes of the stream (fewer where it ends), asking for ``ask`` at a time (at most
        :data:`PIECE`)."""
        pieces: List[bytes] = []
        while wanted > 0:
            piece = self._stream.read(min(max(ask, wanted), PIECE))
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        return pieces


def stream_length(stream: IO[bytes]) -> Optional[int]:
    """The bytes ``stream`` holds from where it stands, where it can tell without reading them (it seeks: a
    ranged object's stream, a file), else ``None``. The stream is left where it stood."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    except (AttributeError, OSError, ValueError):  # a stream that says it seeks but cannot
        return None
    return end - here


def padded(size: int) -> int:
    """``size`` rounded up to whole blocks: what a member's data takes in the archive."""
    return -(-size // BLOCK) * BLOCK


class MemberHeader(NamedTuple):
    """One member: its name, type, data size, and the byte its first header starts at (extensions included)."""

    name: str
    type: bytes
    size: int
    start: int

    @property
    def regular(self) -> bool:
        return self.type in _REGULAR


def _parse_block(block: bytes, at: int) -> HeaderBlock:
    try:
        return parse_block(block)
    except tarfile.HeaderError as error:
        raise HeaderProblem(str(error) or type(error).__name__, at) from error


def parse_pax(data: bytes, at: int) -> Dict[str, str]:
    """The records of a pax extended header (``"%d %s=%s\\n"`` each)."""
    records: Dict[str, str] = {}
    position = 0
    while position < len(data) and data[position:position + 1] not in (b"\0", b""):
        space = data.find(b" ", position)
        try:
            length = int(data[position:space])
        except ValueError:
            raise HeaderProblem("a pax header record without a length", at) from None
        record = data[position:position + length]
        if space < 0 or length < 5 or position + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise HeaderProblem("a damaged pax header record", at)
        key, value = record[space - position + 1:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def read_header(tar: TarInput, global_pax: Dict[str, str]) -> Optional[MemberHeader]:
    """The next member's headers, or ``None`` at a zero block (the end-of-archive marker; ``tar.offset`` is
    then just after it). Raises :class:`HeaderProblem` for a damaged header, ``EOFError`` where the stream ends
    inside or right before a header (``tar.offset`` says where)."""
    start = tar.offset
    long_name: Optional[str] = None
    pax: Dict[str, str] = {}
    extensions = 0
    while True:
        at = tar.offset
        block = tar.read(BLOCK)
        if len(block) < BLOCK:
            raise EOFError(at if not block else tar.offset)
        if not block.strip(b"\0"):
            if at != start:
                raise HeaderProblem("a zero block after an extended header", at)
            return None
        info = _parse_block(block, at)
        if info.type not in _EXTENSIONS:
            return _member(info, start, at, long_name, {**global_pax, **pax}, tar.size)
        if info.size < 0 or info.size > _MAX_EXTENSION - extensions:
            raise HeaderProblem(f"an extended header of {info.size} bytes", at)
        extensions += info.size
        data = tar.read(padded(info.size))
        if len(data) < padded(info.size):
            raise EOFError(tar.offset)
        data = data[:info.size]
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type == tarfile.XGLTYPE:
            global_pax.update(parse_pax(data, at))
        elif info.type != tarfile.GNUTYPE_LONGLINK:
            pax.update(parse_pax(data, at))


def _member(info: HeaderBlock, start: int, at: int, long_name: Optional[str], pax: Dict[str, str],
            stream_size: Optional[int]) -> MemberHeader:
    """The member ``info`` (its last header block at ``at``) heads, or the problem with it (``stream_size``: where
    the stream ends, where known)."""
    name = pax.get("path", long_name if long_name is not None else info.name)
    if info.type == tarfile.GNUTYPE_SPARSE or any(key.startswith("GNU.sparse.") for key in pax):
        name = pax.get("GNU.sparse.name", name)  # pax sparse 1.0 keeps the real name there
        raise HeaderProblem(f"member {name!r} is a sparse file, which shards do not hold", at, name)
    size = info.size
    if "size" in pax:
        try:
            size = int(pax["size"])
        except ValueError:
            raise HeaderProblem(f"member {name!r}: pax size {pax['size']!r} is not a number", at) from None
    if size < 0:
        raise HeaderProblem(f"negative size {size}", at)
    if stream_size is not None and at + BLOCK + size > stream_size:
        raise ClaimPastEnd(name, size, start, stream_size)
    return MemberHeader(name, info.type, size, start)


def after_the_end(tar: TarInput, marker_at: int, shown: Callable[[int], int], single: bool = False) -> Optional[str]:
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
        if zero_blocks >= 2 and (single or len(block) == BLOCK and is_header(block)):
            tar.unread(block)
            return ""
        if zero_blocks == 1:
            nonzero = at + len(block) - len(rest)
            return (f"damaged member header at byte {shown(marker_at)}: the archive ends there, but byte "
                    f"{shown(nonzero)} is not zero")
        return f"damaged member header at byte {shown(at)}: neither zeros nor another archive after the end-of-archive marker"


def is_header(block: bytes) -> bool:
    """Whether ``block`` parses as a tar header (its checksum right)."""
    try:
        parse_block(block)
    except tarfile.HeaderError:
        return False
    return True
