"""WebDataset grouping: tar members into samples, as a plain generator (:func:`group_by_keys`) and as the
``group`` stage (:class:`SampleGrouper`), both over one :class:`Grouper`.

The rules are WebDataset's (``webdataset.tariterators``), so a shard gives the same samples here as there:

- a member ``dir/sub.v1/sample_0001.image.png`` belongs to sample ``dir/sub.v1/sample_0001`` as field
  ``image.png``: the key is the member path up to the *first* dot of the file name, directories
  (dots in them included) kept; the field is the rest, lower-cased;
- a member whose file name has no dot (``README``, ``dir/LICENSE``), or a top-level one starting with a dot
  (``.hidden``), belongs to no sample and is skipped, and so are WebDataset's metadata members (a first
  path component ``__name__``, e.g. ``__index__``); like WebDataset, ``dir/.hidden`` is field ``hidden``
  of sample ``dir/``;
- a sample is a run of consecutive members with the same key, in one shard: it ends when the key changes
  or the shard ends, so nothing is buffered beyond one sample, and samples never span shards;
- a field seen twice in one sample is an error (``ValueError``), as in WebDataset; under
  ``on_error="skip"``/``"warn"`` (see ``policy``) that sample is dropped instead, and so is one lacking a
  required field;
- a damaged shard (a ``tar.DamagedShard`` among the members) ends its shard: the samples before it are kept,
  and so is the pending one if the damage lies in a member of another key; the one it may have cut is dropped.

Two differences, both from how members are read (``tar``): member names are normalised as ``load_from_tar()``
does, so ``./a.png`` is sample ``a`` (WebDataset: ``./a``); and a member outside the shard (``../a.png``,
``/a.png``) is bad data naming it.

Each sample of a shard read through the ``tar`` stage knows where it lies (a
:class:`~.positions.PositionedSample`): its number in the shard and the bytes of its members, which is all a
checkpoint needs to read it again or to go on after it.
"""
import re
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

from ..stage import SOURCE, Stage
from .policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .positions import Position, PositionedSample, ShardSlice
from .foreign import ForeignMembers
from .tar import DamagedShard, Member, ShardEnd, tar_members

__all__ = ["ForeignMembers", "Grouper", "SampleGrouper", "group_by_keys", "shard_samples", "split_member_name"]

# Both are webdataset's own expressions (tariterators.base_plus_ext and tar_file_iterator's skip_meta).
_KEY_AND_FIELD = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_METADATA_MEMBER = re.compile(r"__[^/]*__($|/)")


def split_member_name(member_name: str) -> Optional[Tuple[str, str]]:
    """Split a tar member name into ``(sample_key, field)`` by WebDataset's rule, or ``None`` to skip it.

    The key is everything up to the first dot of the file name (directories kept, dots in them
    included); the field is the rest, lower-cased. ``None`` for a file name without a dot, a top-level
    name starting with a dot, and WebDataset's metadata members (first path component ``__name__``).

    >>> split_member_name("dir/sub.v1/sample_0001.image.PNG")
    ('dir/sub.v1/sample_0001', 'image.png')
    >>> split_member_name("dir/README") is None
    True
    """
    if _METADATA_MEMBER.match(member_name):
        return None
    match = _KEY_AND_FIELD.match(member_name)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


def check_required_fields(required_fields: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(required_fields, str):
        raise TypeError(f"required_fields must be a sequence of field names, not the string {required_fields!r}")
    return tuple(required_fields)


Item = Union[Member, DamagedShard, ShardEnd, Tuple[str, str, bytes]]


class Grouper:
    """Members pushed in one at a time, samples out: :meth:`push` returns the sample an item completes (at
    most one), and raises a bad sample or shard, as ``on_error`` says, when the next item is pushed (so
    that a sample completed before the damage comes out first); :meth:`finish` after the last item."""

    def __init__(self, required_fields: Sequence[str] = (), on_error: str = "raise",
                 error_counts: Optional[ErrorCounts] = None) -> None:
        self.required_fields = check_required_fields(required_fields)
        self.on_error = check_on_error(on_error)
        self.error_counts = error_counts if error_counts is not None else ErrorCounts()
        self.clear()

    def clear(self) -> None:
        """Forget the sample being gathered and the shard being read (a new pass)."""
        self._sample: Optional[Dict[str, Any]] = None
        self._dropped = False  # the sample repeated a field: its remaining members are skipped too
        self._start: Optional[int] = None  # where its first member's header starts
        self._end: Optional[int] = None  # where the header after its last member starts
        self._shard: Optional[str] = None
        self._index = 0  # the number of the next sample to complete, in its shard
        self._skip_before = 0
        self._last_key: Optional[str] = None  # the last sample given of this shard
        self._pending: Optional[Tuple[Exception, str]] = None
        self._resume: Optional[Tuple[str, int, bool]] = None

    def resume_at(self, url: str, index: int, skip_before: bool) -> None:
        """The next shard is ``url`` opened again where sample ``index`` begins: number its samples from there
        (``skip_before``: its offsets are unknown and it is read again from the slice's start: number as
        usual and drop the samples before ``index``)."""
        self._resume = (url, index, skip_before)

    @property
    def next_index(self) -> int:
        """The number of the next sample of the current shard."""
        return self._index

    @property
    def shard(self) -> Optional[str]:
        """The shard being read (``None`` between shards)."""
        return self._shard

    @property
    def offsets_known(self) -> bool:
        return self._start is not None

    def push(self, item: Item) -> Optional[Dict[str, Any]]:
        self._raise_pending()
        if isinstance(item, ShardEnd):
            done = self._complete()
            self._shard = None
            return done
        if isinstance(item, DamagedShard):
            return self._damaged(item)
        url, member_name, data = item[0], item[1], item[2]
        done = None
        if self._shard is None or url != self._shard:  # a new shard (plain member tuples have no ShardEnd)
            done = self._complete()
            self._begin_shard(url)
        key_and_field = split_member_name(member_name)
        if key_and_field is None:
            return done
        sample_key, field = key_and_field
        if self._sample is None or sample_key != self._sample["__key__"]:
            done = self._complete() if done is None else done
            self._sample, self._dropped = {"__key__": sample_key, "__url__": str(url)}, False
            self._start = getattr(item, "start", None)
        if self._dropped:
            return done
        if field in self._sample:
            self._dropped = True
            self._fail(ValueError(
                f"duplicate field {field!r} in sample {sample_key!r} in {str(url)!r} (member {member_name!r})"
            ), "duplicate_fields")
        else:
            self._sample[field] = data
            self._end = getattr(item, "end", None)
        return done

    def finish(self) -> Optional[Dict[str, Any]]:
        """After the last item: the sample still gathered, if complete; raises what is pending."""
        self._raise_pending()
        done = self._complete()
        self._shard = None
        return done

    def _begin_shard(self, url: str) -> None:
        self._shard, self._last_key, self._skip_before = url, None, 0
        self._index = url.first_index if isinstance(url, ShardSlice) else 0
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] == str(url):
            if resume[2]:
                self._skip_before = resume[1]
            else:
                self._index = resume[1]

    def _complete(self) -> Optional[Dict[str, Any]]:
        """The sample gathered, if it is whole and wanted; the next one gets the next number."""
        sample, self._sample = self._sample, None
        if sample is None:
            return None
        index = self._index
        self._index += 1
        if self._dropped or not self._has_required(sample):
            return None
        self._last_key = sample["__key__"]
        part = self._shard
        if not isinstance(part, ShardSlice):
            return sample
        if index < self._skip_before or not part.wants(index):
            return None
        return PositionedSample(sample, Position(part.url, part.shard, index, self._start, self._end))

    def _has_required(self, sample: Dict[str, Any]) -> bool:
        missing = [field for field in self.required_fields if field not in sample]
        if missing:
            fields = sorted(field for field in sample if not field.startswith("__"))
            self._fail(ValueError(
                f"sample {sample['__key__']!r} in {sample['__url__']!r} lacks required field(s) {missing}; it has {fields}"
            ), "incomplete_samples")
        return not missing

    def _damaged(self, damage: DamagedShard) -> Optional[Dict[str, Any]]:
        kept = self._complete() if self._keeps_pending(damage) else None
        self._sample = None
        last = self._last_key if self._shard == damage.shard_url else None
        where = f"after sample {last!r}" if last is not None else "before its first sample"
        error = with_message(damage.error, f"bad shard {str(damage.shard_url)!r}, {where}: {damage.error}")
        self._pending = (error, "bad_shards")
        if kept is None:
            self._raise_pending()
        return kept

    def _keeps_pending(self, damage: DamagedShard) -> bool:
        """The sample being gathered is whole although ``damage`` ends its shard: the damage lies in the data of
        a member of another key (a damaged header could hide one of the sample's fields)."""
        if damage.member_name is None or self._sample is None:
            return False
        key_and_field = split_member_name(damage.member_name)
        return key_and_field is None or key_and_field[0] != self._sample["__key__"]

    def _fail(self, error: Exception, kind: str) -> None:
        handle_data_error(error, kind=kind, on_error=self.on_error, error_counts=self.error_counts)

    def _raise_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._fail(*pending)


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

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self.grouper.clear()
        self._boundary = None
        super().reset(state)
        if state is not None and state.get("shard") is not None:
            url, skip_before = state["shard"]
            self.grouper.resume_at(url, state["index"], skip_before)

    def next(self) -> Dict[str, Any]:
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
