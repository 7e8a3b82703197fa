"""WebDataset grouping: tar members into samples, as a plain generator (:func:`group_by_keys`) and as the
``group`` stage (:class:`SampleGrouper`), both over one :class:`~.grouper.Grouper`, whose docstring states
WebDataset's rules and where we differ.

Each sample of a shard read through the ``tar`` stage knows where it lies (a
:class:`~.positions.PositionedSample`): its number in the shard and the bytes of its members, which is all a
checkpoint needs to read it again or to go on after it.
"""
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from ..stage import SOURCE, Stage
from .foreign import ForeignMembers
from .grouper import Grouper, Item, check_required_fields, split_member_name
from .policy import ErrorCounts
from .positions import ShardSlice
from .tar import DamagedShard, ShardEnd, tar_members

__all__ = ["ForeignMembers", "Grouper", "SampleGrouper", "check_required_fields", "group_by_keys", "shard_samples",
           "split_member_name"]


def group_by_keys(
    members: Iterable[Item],
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Iterator[Dict[str, Any]]:
    """Group ``(shard_url, member_name, data)`` members (or :class:`~.tar.Member` items) into WebDataset
    samples, streaming.

    Yields ``{"__key__": sample_key, "__url__": shard_url, field: data, ...}`` for each run of consecutive
    members with the same key in the same shard (see :func:`split_member_name`); members that belong to
    no sample are skipped. A sample repeating a field, or lacking one of ``required_fields``, is bad data:
    ``on_error`` (``"raise"``, ``"skip"`` or ``"warn"``) decides, and ``error_counts`` counts it. So it does
    for a :class:`~torchdata_s3ext.samples.tar.DamagedShard` item (counted as ``bad_shards``, the message
    naming the shard and its last good sample key).

    Raises:
        ValueError: under ``on_error="raise"``, a field repeats within a sample, or a sample lacks one of
            ``required_fields``; the message names the shard URL and the sample key
        tarfile.ReadError: (or the damaged shard's error type) under ``on_error="raise"``

    >>> url = "s3://bucket/shard-000000.tar"
    >>> members = [(url, "a.png", b"1"), (url, "a.cls", b"2"), (url, "b.png", b"3")]
    >>> [(sample["__key__"], sorted(sample)) for sample in group_by_keys(members)]
    [('a', ['__key__', '__url__', 'cls', 'png']), ('b', ['__key__', '__url__', 'png'])]
    """
    grouper = Grouper(required_fields, on_error, error_counts)
    for item in members:
        sample = grouper.push(item)
        if sample is not None:
            yield sample
    sample = grouper.finish()
    if sample is not None:
        yield sample


class SampleGrouper(Stage[Dict[str, Any]]):
    """The ``group`` stage: the members of its source (the ``tar`` stage, or :class:`ForeignMembers`) grouped
    into samples by a :class:`Grouper`.

    Its state goes on after the last sample given: its source's state from before the first member of the
    next sample (a sample boundary), and that sample's number in its shard."""

    kind = "group"

    def __init__(self, source: Stage[Item], grouper: Grouper) -> None:
        super().__init__(source)
        self.grouper = grouper
        self._boundary: Optional[Dict[str, Any]] = None
        self._resumable = True
        self._taken_up: Optional[Dict[str, Any]] = None  # the state reset from, until the next sample

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self.grouper.clear()
        self._boundary = None
        super().reset(state)
        self._taken_up = None
        if state is not None and state.get("shard") is not None:
            url, skip_before = state["shard"]
            self.grouper.resume_at(url, state["index"], skip_before)
            self._taken_up = dict(state)  # a state asked before the next sample is this one

    def next(self) -> Dict[str, Any]:
        self._taken_up = None
        while True:
            before = self.source.state()  # type: ignore[union-attr]
            try:
                item = self.source.next()  # type: ignore[union-attr]
            except StopIteration:
                self._boundary = None
                sample = self.grouper.finish()
                if sample is None:
                    raise
                return sample
            sample = self.grouper.push(item)
            if sample is not None:
                # Ended by the first member of the next sample: go on from before that member; ended by the
                # shard's end or its damage: from after it.
                self._boundary = before if self.grouper.shard is not None and not isinstance(item, (ShardEnd, DamagedShard)) else None
                return sample

    def state(self) -> Dict[str, Any]:
        if self._taken_up is not None:
            return dict(self._taken_up)
        if self._boundary is None:
            return {"stage": self.kind, SOURCE: self.source.state(), "shard": None, "index": 0}  # type: ignore[union-attr]
        shard = self.grouper.shard
        resume = [str(shard), not self.grouper.offsets_known] if isinstance(shard, ShardSlice) else None
        return {"stage": self.kind, SOURCE: self._boundary, "shard": resume, "index": self.grouper.next_index}

    def reading_of(self, items: Any) -> "SampleGrouper":
        grouper = Grouper(self.grouper.required_fields, self.grouper.on_error, self.grouper.error_counts)
        return SampleGrouper(self.source.reading_of(items), grouper)  # type: ignore[union-attr]


def shard_samples(
    shard_url: str,
    tar_stream: Any,
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Iterator[Dict[str, Any]]:
    """The WebDataset samples of one tar stream, read by the one tar reader (``tar.tar_members``) and grouped by
    :func:`group_by_keys`, member by member: a damaged shard is bad data, ``bad_shards`` (see
    ``load_wds_shards``). The stream is read forward and not closed."""
    return group_by_keys(tar_members(shard_url, tar_stream), required_fields, on_error, error_counts)
