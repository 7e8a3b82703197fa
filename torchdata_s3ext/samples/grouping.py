"""WebDataset grouping: tar members into samples, and ``group_wds_samples`` (after ``load_from_tar()``).

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

Two differences, both from how members are read (``tar``): ``load_from_tar()`` normalises member names before
we see them, so ``./a.png`` is sample ``a`` (WebDataset: ``./a``); and a member outside the shard
(``../a.png``, ``/a.png``) raises ``ValueError`` naming it.
"""
import itertools
import operator
import re
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

from torch.utils.data.graph import traverse_dps
from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe

from .opener import S3OpenerIterDataPipe
from .policy import ErrorCounts, check_on_error, handle_data_error, with_message
from .positions import PositionedSample, ShardCursor
from .tar import DamagedShard, Member, read_members

__all__ = ["SamplePipe", "WdsSampleGrouperIterDataPipe", "group_by_keys", "split_member_name"]

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


def _complete(
    sample: Dict[str, Any], required_fields: Sequence[str], on_error: str, error_counts: ErrorCounts
) -> bool:
    missing = [field for field in required_fields if field not in sample]
    if missing:
        fields = sorted(field for field in sample if not field.startswith("__"))
        error = ValueError(
            f"sample {sample['__key__']!r} in {sample['__url__']!r} lacks required field(s) {missing}; "
            f"it has {fields}"
        )
        handle_data_error(error, kind="incomplete_samples", on_error=on_error, error_counts=error_counts)
    return not missing


def _keeps_pending(sample: Dict[str, Any], damage: DamagedShard) -> bool:
    """Whether the pending sample is whole although ``damage`` ends its shard: the damage lies in another shard,
    or in the data of a member of another key (a header's damage could hide one of the sample's fields)."""
    if sample["__url__"] != damage.shard_url:
        return True
    if damage.member_name is None:
        return False
    key_and_field = split_member_name(damage.member_name)
    return key_and_field is None or key_and_field[0] != sample["__key__"]


def _shard_error(damage: DamagedShard, last_key: Optional[str], on_error: str) -> Exception:
    where = f"after sample {last_key!r}" if last_key is not None else "before its first sample"
    message = f"bad shard {damage.shard_url!r}, {where}: {damage.error}"
    if damage.fatal and on_error != "raise":
        message += (
            "; load_from_tar() cannot go past a damaged shard, so it is not skipped: read shards with "
            "load_wds_shards() (or wds_pipe(on_error=...)), which skips damaged shards"
        )
    return with_message(damage.error, message)


def _placed(sample: Dict[str, Any], cursor: Optional[ShardCursor]) -> Iterator[Dict[str, Any]]:
    """The complete ``sample``, with its position when the shard has a cursor, unless its slice does not want it."""
    if cursor is None:
        yield sample
        return
    position = cursor.position()
    if cursor.wanted(position):
        yield PositionedSample(sample, position)


def group_by_keys(
    members: Iterable[Union[Member, DamagedShard]],
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
    cursor: Optional[ShardCursor] = None,
) -> Iterator[Dict[str, Any]]:
    """Group ``(shard_url, member_name, data)`` members into WebDataset samples, streaming.

    Yields ``{"__key__": sample_key, "__url__": shard_url, field: data, ...}`` for each run of consecutive
    members with the same key in the same shard (see :func:`split_member_name`); members that belong to
    no sample are skipped. A sample repeating a field, or lacking one of ``required_fields``, is bad data:
    ``on_error`` (``"raise"``, ``"skip"`` or ``"warn"``) decides, and ``error_counts`` counts it. So it does
    for a :class:`~torchdata_s3ext.samples.tar.DamagedShard` item (counted as ``bad_shards``, the message
    naming the shard and its last good sample key), except a fatal one, which raises whatever ``on_error``.

    ``cursor``: the members are one shard's, read through this cursor; each sample is then a
    :class:`~torchdata_s3ext.samples.positions.PositionedSample`, and the samples its slice does not want are
    left out.

    Raises:
        ValueError: under ``on_error="raise"``, a field repeats within a sample, or a sample lacks one of
            ``required_fields``; the message names the shard URL and the sample key
        tarfile.ReadError: (or the damaged shard's error type) under ``on_error="raise"``, or for a fatal one

    >>> url = "s3://bucket/shard-000000.tar"
    >>> members = [(url, "a.png", b"1"), (url, "a.cls", b"2"), (url, "b.png", b"3")]
    >>> [(sample["__key__"], sorted(sample)) for sample in group_by_keys(members)]
    [('a', ['__key__', '__url__', 'cls', 'png']), ('b', ['__key__', '__url__', 'png'])]
    """
    counts = error_counts if error_counts is not None else ErrorCounts()
    sample: Optional[Dict[str, Any]] = None
    dropped = False  # the current sample repeated a field: its remaining members are skipped too
    last_yielded: Tuple[Optional[str], Optional[str]] = (None, None)  # (shard_url, sample_key)
    for member in members:
        if isinstance(member, DamagedShard):
            if sample is not None and not dropped and _keeps_pending(sample, member):
                if _complete(sample, required_fields, on_error, counts):
                    last_yielded = sample["__url__"], sample["__key__"]
                    yield from _placed(sample, cursor)
            sample = None
            last_key = last_yielded[1] if last_yielded[0] == member.shard_url else None
            error = _shard_error(member, last_key, on_error)
            handle_data_error(error, kind="bad_shards", on_error="raise" if member.fatal else on_error, error_counts=counts)
            continue
        shard_url, member_name, data = member
        key_and_field = split_member_name(member_name)
        if key_and_field is None:
            continue
        sample_key, field = key_and_field
        if sample is None or sample_key != sample["__key__"] or shard_url != sample["__url__"]:
            if sample is not None and not dropped and _complete(sample, required_fields, on_error, counts):
                last_yielded = sample["__url__"], sample["__key__"]
                yield from _placed(sample, cursor)
            sample, dropped = {"__key__": sample_key, "__url__": shard_url}, False
        if dropped:
            continue
        if field in sample:
            error = ValueError(
                f"duplicate field {field!r} in sample {sample_key!r} in {shard_url!r} (member {member_name!r})"
            )
            handle_data_error(error, kind="duplicate_fields", on_error=on_error, error_counts=counts)
            dropped = True
            continue
        sample[field] = data
        if cursor is not None:
            cursor.field_read()
    if sample is not None and not dropped and _complete(sample, required_fields, on_error, counts):
        yield from _placed(sample, cursor)


def _required_fields(required_fields: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(required_fields, str):
        raise TypeError(f"required_fields must be a sequence of field names, not the string {required_fields!r}")
    return tuple(required_fields)


def _opened_url(datapipe: IterDataPipe) -> Optional[str]:
    """The URL the nearest ``open_s3`` upstream of ``datapipe`` opened last: the shard that ``load_from_tar()``
    failed on before its first member, in a chain without buffering between the two."""
    try:
        graph = traverse_dps(datapipe)
    except Exception:  # a pipe that does not pickle: no URL rather than no error
        return None
    while graph:
        for pipe, _ in graph.values():
            if isinstance(pipe, S3OpenerIterDataPipe):
                return getattr(pipe, "_last_url", None)
        graph = {key: node for _, children in graph.values() for key, node in children.items()}
    return None


class SamplePipe(IterDataPipe[Dict[str, Any]]):
    """What the sample-making pipes (``group_wds_samples``, ``load_wds_shards``) share: their settings, and no
    length (samples per shard vary)."""

    def __init__(
        self,
        source_datapipe: IterDataPipe[Tuple[str, Any]],
        required_fields: Sequence[str] = (),
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
    ) -> None:
        self.source_datapipe = source_datapipe
        self.required_fields: Tuple[str, ...] = _required_fields(required_fields)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} instance doesn't have valid length")


@functional_datapipe("group_wds_samples")
class WdsSampleGrouperIterDataPipe(SamplePipe):
    r"""
    Groups the ``(path, stream)`` pairs of ``load_from_tar()`` into WebDataset samples, dicts
    ``{"__key__": sample_key, "__url__": shard_url, "<field>": bytes, ...}`` (functional name:
    ``group_wds_samples``).

    Members are read one at a time, in tar order, and closed once read; a sample is yielded as soon as
    the next key (or the next shard) starts, so memory holds one sample whatever the shard size.

    Args:
        source_datapipe: the output of ``load_from_tar()``, over shards opened by ``open_s3()`` (or any
            opener, see the Note)
        required_fields: fields every sample must have, as named in the sample (``"image.png"``, ``"cls"``);
            a sample lacking one raises ``ValueError`` naming its URL, its key and the missing fields
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``: what a sample lacking a required field
            or repeating one does, and a damaged shard that ``load_from_tar()`` reads to its end (a damaged
            member header, a member outside the shard): raise, or be dropped (silently, or with a
            ``DataErrorWarning`` and a log record on logger ``"torchdata_s3ext"``). A shard that
            ``load_from_tar()`` fails on (not a tar, cut short, a negative member size) raises whatever
            ``on_error``, as ``load_from_tar()`` cannot go past it: ``load_wds_shards()`` can
        error_counts: where to count bad samples (``incomplete_samples``, ``duplicate_fields``, ``bad_shards``); a new
            :class:`ErrorCounts` by default. The pipe's ``error_counts`` attribute; counts are per process,
            each DataLoader worker counts its own

    Note:
        Keys and fields follow WebDataset: a member ``dir/sub.v1/sample_0001.image.png`` is field
        ``image.png`` of sample ``dir/sub.v1/sample_0001`` (key = path up to the first dot of the file
        name, field lower-cased). A member without a dot in its file name, and WebDataset's ``__name__``
        metadata members, are skipped; a field repeated within a sample raises ``ValueError`` naming the
        URL and the key. A sample never spans two shards, nor two passes over the same shard.
        Directories, links and other non-regular members never get here: ``load_from_tar()`` skips them.

        Errors name the shard URL and the last good sample key. Each shard's last member is kept open until
        the next pair arrives, and its tail is then checked (``tar.end_of_archive_problem``). For an error
        before a shard's first member (a non-tar object) the URL is the one ``open_s3()`` opened last.

        ``__url__`` is the shard URL as given to ``open_s3()``, read from the tar stream's name, because
        ``load_from_tar()``'s paths turn ``s3://`` into ``s3:/``. A tar stream without a name (torchdata's
        ``FileOpener`` gives none) is split after the last ``.tar/``, ``.tar.gz/`` or ``.tgz/`` of the path,
        and ``__url__`` is then that normalised path.

    Example:
        >>> import io, tarfile
        >>> import torchdata_s3ext
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> from torchdata.datapipes.utils import StreamWrapper
        >>> shard = io.BytesIO()
        >>> with tarfile.open(fileobj=shard, mode="w") as tar:
        ...     for member_name, data in [("train/0001.png", b"PNG"), ("train/0001.cls", b"7")]:
        ...         info = tarfile.TarInfo(member_name)
        ...         info.size = len(data)
        ...         tar.addfile(info, io.BytesIO(data))
        >>> url = "s3://bucket/shard-000000.tar"
        >>> dp = IterableWrapper([(url, StreamWrapper(io.BytesIO(shard.getvalue()), name=url))], deepcopy=False)
        >>> list(dp.load_from_tar().group_wds_samples(required_fields=["png"]))
        [{'__key__': 'train/0001', '__url__': 's3://bucket/shard-000000.tar', 'png': b'PNG', 'cls': b'7'}]
    """

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        # One group per tar stream, not per URL: a one-sample shard listed twice in a row (``cycle()``)
        # must give two samples, not one with every field duplicated.
        members = read_members(self.source_datapipe, opened_url=lambda: _opened_url(self.source_datapipe))
        for shard_stream, shard_members in itertools.groupby(members, key=operator.itemgetter(0)):
            shard_members = (member for _, member in shard_members)
            cursor = getattr(shard_stream, "shard_cursor", None)
            yield from group_by_keys(shard_members, self.required_fields, self.on_error, self.error_counts, cursor)
