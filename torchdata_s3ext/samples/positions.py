"""Where samples lie in their shards, so that a resumed job reads what is left and nothing else.

- :class:`Position`: a sample's shard, its number in the shard and the bytes its members span.
- :class:`ShardSlice`: a shard URL that says which part of the shard to read: from a member header's byte, up
  to a byte, only some of its samples. It is a ``str`` (the URL), so every pipe that passes URLs passes it.
- :class:`ShardCursor`: how far the reading of one opened shard has got; ``open_s3`` makes one per shard and
  the tar readers move it member by member, so that the grouping can give each sample its :class:`Position`.
- :class:`PositionedSample`: a sample ``dict`` that knows its :class:`Position` (``sample.position``), equal to
  the plain ``dict`` of its fields.

Offsets are bytes of the object as stored. In a compressed shard they are not known (``None``): such a shard
is read again from its start, and the samples before the ones wanted are skipped, not yielded.
"""
from typing import AbstractSet, Any, Dict, FrozenSet, NamedTuple, Optional, Tuple

__all__ = ["PassesCheckpointOn", "Position", "PositionedSample", "ShardCursor", "ShardSlice", "member_end"]

_BLOCK = 512


class Position(NamedTuple):
    """Where one sample lies: its shard, its number there (from 0), the bytes ``start..end-1`` that hold its
    members (``start`` is the end of the sample before it), and the number of the work item that read it."""

    shard: str
    index: int
    start: Optional[int]
    end: Optional[int]
    item: Optional[int] = None


def member_end(data_offset: int, size: int) -> int:
    """The byte after a member's data, padded to tar's 512-byte blocks: where the next header starts."""
    return data_offset + -(-size // _BLOCK) * _BLOCK


class ShardSlice(str):
    """A shard URL with what to read of it (a plain URL means all of it).

    Args:
        url: the shard URL
        start: the byte to start at: a member header (``0``: the shard's start)
        end: the byte to stop at (``None``: the shard's end); a slice that ends early has no end-of-archive
            marker, and none is looked for
        first_index: the number of the first sample found at ``start``
        from_index: every sample numbered from this one on is wanted (``None``: only those in ``wanted``)
        wanted: samples wanted besides (numbers)
        item: the number of this slice in its reader's work list for the epoch (set by the reader's sharding)

    >>> part = ShardSlice("s3://b/shard-000001.tar", start=10240, first_index=7, from_index=7)
    >>> part == "s3://b/shard-000001.tar", part.wants(6), part.wants(7)
    (True, False, True)
    """

    start: int
    end: Optional[int]
    first_index: int
    from_index: Optional[int]
    wanted: FrozenSet[int]
    item: Optional[int]

    def __new__(
        cls, url: str, start: int = 0, end: Optional[int] = None, first_index: int = 0,
        from_index: Optional[int] = 0, wanted: AbstractSet[int] = frozenset(), item: Optional[int] = None,
    ) -> "ShardSlice":
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end} of {str(url)!r}")
        self = super().__new__(cls, url)
        self.start, self.end, self.first_index = int(start), end, int(first_index)
        self.from_index, self.wanted, self.item = from_index, frozenset(wanted), item
        return self

    @classmethod
    def of(cls, url: str, item: Optional[int] = None) -> "ShardSlice":
        """``url`` as a slice (all of the shard, unless it is a slice already), numbered ``item``."""
        if isinstance(url, ShardSlice):
            return url.renumbered(item)
        return cls(url, item=item)

    @property
    def url(self) -> str:
        return str.__str__(self)

    @property
    def whole(self) -> bool:
        """Reads the whole shard and every sample in it."""
        return self.start == 0 and self.end is None and self.from_index == 0

    def wants(self, index: int) -> bool:
        return (self.from_index is not None and index >= self.from_index) or index in self.wanted

    def after(self, position: Position) -> Optional["ShardSlice"]:
        """What is left of this slice once the sample at ``position`` (read from it) has been taken, or ``None``."""
        wanted = frozenset(index for index in self.wanted if index > position.index)
        from_index = None if self.from_index is None else max(self.from_index, position.index + 1)
        if from_index is None and not wanted:
            return None
        if position.end is None:  # offsets unknown (compressed): read it again, skipping what was taken
            return ShardSlice(self.url, self.start, self.end, self.first_index, from_index, wanted, self.item)
        return ShardSlice(self.url, position.end, self.end, position.index + 1, from_index, wanted, self.item)

    def renumbered(self, item: Optional[int]) -> "ShardSlice":
        return ShardSlice(self.url, self.start, self.end, self.first_index, self.from_index, self.wanted, item)

    def to_state(self) -> Tuple[Any, ...]:
        """Plain values (for a checkpoint)."""
        return (self.url, self.start, self.end, self.first_index, self.from_index, sorted(self.wanted))

    @classmethod
    def from_state(cls, state: Tuple[Any, ...], item: Optional[int] = None) -> "ShardSlice":
        url, start, end, first_index, from_index, wanted = state
        return cls(url, start, end, first_index, from_index, frozenset(wanted), item)

    def __reduce__(self) -> Tuple[Any, ...]:
        return ShardSlice, (self.url, self.start, self.end, self.first_index, self.from_index, self.wanted, self.item)

    def __repr__(self) -> str:
        if self.whole:
            return str.__repr__(self)
        return (f"ShardSlice({self.url!r}, start={self.start}, end={self.end}, first_index={self.first_index}, "
                f"from_index={self.from_index}, wanted={sorted(self.wanted)})")


class ShardCursor:
    """How far the reading of one opened shard (a :class:`ShardSlice`) has got.

    The tar reader calls :meth:`member_read` after each member; the grouping calls :meth:`field_read` when it
    adds that member to a sample and :meth:`position` when the sample is complete. ``offsets`` is ``False``
    when byte offsets cannot be known (a compressed shard): positions then have ``None`` offsets.
    """

    def __init__(self, shard_slice: ShardSlice) -> None:
        self.slice = shard_slice
        self.base = shard_slice.start  # what the tar reader's offsets are relative to, if they are
        self.next_index = shard_slice.first_index
        self.offsets = True
        self._last_member_end: Optional[int] = shard_slice.start
        self._sample_start: Optional[int] = shard_slice.start
        self._sample_end: Optional[int] = shard_slice.start

    def member_read(self, data_offset: Optional[int], size: int, relative: bool) -> None:
        """A member was read whose data starts at ``data_offset`` (of the stream if ``relative``, else of the
        object; ``None``: unknown, e.g. compressed)."""
        if data_offset is None or not self.offsets:
            self.offsets = False
            self._last_member_end = None
            return
        self._last_member_end = member_end(data_offset + (self.base if relative else 0), size)

    def field_read(self) -> None:
        """The member just read belongs to the sample being gathered."""
        self._sample_end = self._last_member_end

    def position(self) -> Position:
        """The complete sample's position; the next sample starts after it."""
        position = Position(self.slice.url, self.next_index, self._sample_start if self.offsets else None,
                            self._sample_end if self.offsets else None, self.slice.item)
        self.next_index += 1
        self._sample_start = self._sample_end
        return position

    def wanted(self, position: Position) -> bool:
        return self.slice.wants(position.index)


class PositionedSample(Dict[str, Any]):
    """A sample ``dict`` that knows where it lies (``position``); compares and prints as the plain ``dict``."""

    __slots__ = ("position",)

    def __init__(self, fields: Dict[str, Any], position: Position) -> None:
        super().__init__(fields)
        self.position = position

    def __reduce__(self) -> Tuple[Any, ...]:
        return PositionedSample, (dict(self), self.position)


class PassesCheckpointOn:
    """For pipes that turn each sample into one (or none) and hold none between two: their ``state_dict`` and
    ``load_state_dict`` are their source's (``shuffle_samples``', where checkpoints are taken), when it has them,
    so that ``StatefulDataLoader`` finds them on the pipe it is given."""

    source_datapipe: Any

    @property
    def state_dict(self) -> Any:
        return self.source_datapipe.state_dict  # AttributeError (no checkpoints) when the source has none

    @property
    def load_state_dict(self) -> Any:
        return self.source_datapipe.load_state_dict
