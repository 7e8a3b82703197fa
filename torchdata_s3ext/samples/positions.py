"""Where shards and samples lie, as values that travel down the chain of stages.

- :class:`ShardSlice`: a shard URL that says which part of the shard to read: from a member header's byte, up
  to a byte, only some of its samples, and which shard of the listed shards it is. It is a ``str`` (the URL),
  so a pipe of URLs passes it on.
- :class:`Position`: a sample's shard, its number in the shard and the bytes its members span.
- :class:`PositionedSample`: a sample ``dict`` that knows its :class:`Position` (``sample.position``), equal to
  the plain ``dict`` of its fields.
- :func:`positions_from_codes`: positions packed as integers (how a shuffle buffer's state holds its samples).

Offsets are bytes of the object as stored. In a compressed shard they are not known (``None``): such a shard
is read again from its start, and the samples before the ones wanted are skipped, not yielded.
"""
import array
from typing import AbstractSet, Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

__all__ = ["CODE_WIDTH", "Position", "PositionedSample", "ShardSlice", "positions_from_codes"]

#: a position as integer codes: (its URL's number in a table of URLs, sample number, start, end), -1 for None
CODE_WIDTH = 4


class Position(NamedTuple):
    """Where one sample lies: its shard's URL and number among the listed shards (``None`` when the shards
    were not listed by us), its number in the shard (from 0), and the bytes ``start..end-1`` that hold its
    members (``start`` is the header of its first member, ``end`` the header after its last; ``None`` in a
    compressed shard)."""

    url: str
    shard: Optional[int]
    index: int
    start: Optional[int]
    end: Optional[int]


class ShardSlice(str):
    """A shard URL with what to read of it (a plain URL means all of it).

    Args:
        url: the shard URL
        shard: its number among the listed shards (``None``: not known)
        start: the byte to start at: a member header (``0``: the shard's start)
        end: the byte to stop at (``None``: the shard's end); a slice that ends early has no end-of-archive
            marker, and none is looked for
        first_index: the number of the first sample found at ``start``
        from_index: every sample numbered from this one on is wanted (``None``: only those in ``wanted``)
        wanted: samples wanted besides (numbers)

    >>> part = ShardSlice("s3://b/shard-000001.tar", start=10240, first_index=7, from_index=7)
    >>> part == "s3://b/shard-000001.tar", part.wants(6), part.wants(7)
    (True, False, True)
    """

    shard: Optional[int]
    start: int
    end: Optional[int]
    first_index: int
    from_index: Optional[int]
    wanted: FrozenSet[int]

    def __new__(
        cls, url: str, shard: Optional[int] = None, start: int = 0, end: Optional[int] = None, first_index: int = 0,
        from_index: Optional[int] = 0, wanted: AbstractSet[int] = frozenset(),
    ) -> "ShardSlice":
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end} of {str(url)!r}")
        self = super().__new__(cls, url)
        self.shard, self.start, self.end, self.first_index = shard, int(start), end, int(first_index)
        self.from_index, self.wanted = from_index, frozenset(wanted)
        return self

    @classmethod
    def of(cls, url: str, shard: Optional[int] = None) -> "ShardSlice":
        """``url`` as a slice (all of the shard, unless it is a slice already)."""
        if isinstance(url, ShardSlice):
            return url
        return cls(url, shard)

    @property
    def url(self) -> str:
        return str.__str__(self)

    @property
    def whole(self) -> bool:
        """Reads the whole shard and every sample in it."""
        return self.start == 0 and self.end is None and self.from_index == 0

    def wants(self, index: int) -> bool:
        return (self.from_index is not None and index >= self.from_index) or index in self.wanted

    def resumed(self, start: Optional[int], first_index: int) -> "ShardSlice":
        """What is left of this slice from the sample numbered ``first_index``, whose first member header is at
        byte ``start`` (``None``: not known, the shard is read again from where the slice starts and the
        samples before it skipped)."""
        wanted = frozenset(index for index in self.wanted if index >= first_index)
        from_index = None if self.from_index is None else max(self.from_index, first_index)
        if start is None:
            return ShardSlice(self.url, self.shard, self.start, self.end, self.first_index, from_index, wanted)
        return ShardSlice(self.url, self.shard, start, self.end, first_index, from_index, wanted)

    def done(self) -> bool:
        """No sample is wanted any more (a slice made by :meth:`resumed` after the last wanted one)."""
        return self.from_index is None and not self.wanted

    def to_state(self) -> Tuple[Any, ...]:
        """Plain values (for a checkpoint)."""
        return (self.url, self.shard, self.start, self.end, self.first_index, self.from_index, sorted(self.wanted))

    @classmethod
    def from_state(cls, state: Tuple[Any, ...]) -> "ShardSlice":
        url, shard, start, end, first_index, from_index, wanted = state
        return cls(url, shard, start, end, first_index, from_index, frozenset(wanted))

    def __reduce__(self) -> Tuple[Any, ...]:
        return ShardSlice, (self.url, self.shard, self.start, self.end, self.first_index, self.from_index, self.wanted)

    def __repr__(self) -> str:
        if self.whole:
            return str.__repr__(self)
        return (f"ShardSlice({self.url!r}, shard={self.shard}, start={self.start}, end={self.end}, "
                f"first_index={self.first_index}, from_index={self.from_index}, wanted={sorted(self.wanted)})")


class PositionedSample(Dict[str, Any]):
    """A sample ``dict`` that knows where it lies (``position``); compares and prints as the plain ``dict``."""

    __slots__ = ("position",)

    def __init__(self, fields: Dict[str, Any], position: Position) -> None:
        super().__init__(fields)
        self.position = position

    def __reduce__(self) -> Tuple[Any, ...]:
        return PositionedSample, (dict(self), self.position)


def positions_from_codes(codes: bytes, urls: Sequence[Optional[str]]) -> List[Position]:
    """The positions packed in ``codes`` (int64s, :data:`CODE_WIDTH` to a position) over the table ``urls``."""
    numbers = array.array("q")
    numbers.frombytes(codes)
    positions = []
    for offset in range(0, len(numbers), CODE_WIDTH):
        number, index, start, end = numbers[offset:offset + CODE_WIDTH]
        positions.append(Position(urls[number], None, index, None if start < 0 else start, None if end < 0 else end))  # type: ignore[arg-type]
    return positions
