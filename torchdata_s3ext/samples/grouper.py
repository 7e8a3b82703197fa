"""WebDataset grouping's rules: member names into sample keys and fields (:func:`split_member_name`), and
members into samples, one item at a time (:class:`Grouper`, which ``grouping`` drives as a generator and as a
stage).

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
"""
import re
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .positions import Position, PositionedSample, ShardSlice
from .tar import DamagedShard, Member, ShardEnd

__all__ = ["Grouper", "Item", "check_required_fields", "split_member_name"]

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
        """The sample ``item`` completes, if any; raises what the item before left pending."""
        self._raise_pending()
        if isinstance(item, ShardEnd):
            done = self._complete()
            self._shard = None
            return done
        if isinstance(item, DamagedShard):
            return self._damaged(item)
        done = None
        if self._shard is None or item[0] != self._shard:  # a new shard (plain member tuples have no ShardEnd)
            done = self._complete()
            self._begin_shard(item[0])
        ended = self._add_member(item)
        return ended if ended is not None else done

    def _add_member(self, item: Item) -> Optional[Dict[str, Any]]:
        """Put member ``item`` (a :class:`~.tar.Member` or a ``(shard_url, member_name, data)`` tuple) in its
        sample; the sample of the key before, if it begins a new one and that one is complete."""
        url, member_name, data = item[0], item[1], item[2]  # type: ignore[index]
        key_and_field = split_member_name(member_name)
        if key_and_field is None:
            return None
        sample_key, field = key_and_field
        done = None
        if self._sample is None or sample_key != self._sample["__key__"]:
            done = self._complete()
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
        """The sample being gathered is whole although ``damage`` ends its shard: the damage names a member of
        another key (its data cut, or its header parsed but refused: sparse, a size past the end); a header
        that could not be parsed could hide one of the sample's fields."""
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
