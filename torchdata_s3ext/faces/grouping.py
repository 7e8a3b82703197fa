"""The pipes that make WebDataset samples: ``group_wds_samples`` (after ``load_from_tar()``) and
``load_wds_shards`` (straight from ``(url, stream)`` pairs)."""
from typing import Any, Optional, Sequence

from ..epochs.clock import EpochClock
from ..samples.grouping import ForeignMembers, Grouper, SampleGrouper, check_required_fields
from ..samples.policy import ErrorCounts, check_on_error
from ..samples.tar import TarMembers
from ..stage import Stage
from .datapipes import Pipe, functional, stage_of
from .opening import shard_stage, tar_loader_source

__all__ = ["WdsSampleGrouperIterDataPipe", "WdsShardLoaderIterDataPipe"]


class _SamplePipe(Pipe):
    """What the sample-making pipes share: their settings, and no length (samples per shard vary)."""

    def __init__(
        self,
        source_datapipe: Any,
        required_fields: Sequence[str] = (),
        on_error: str = "raise",
        error_counts: Optional[ErrorCounts] = None,
    ) -> None:
        super().__init__(source_datapipe)
        self.required_fields = check_required_fields(required_fields)
        self.on_error: str = check_on_error(on_error)
        self.error_counts: ErrorCounts = error_counts if error_counts is not None else ErrorCounts()

    def _grouped(self, members: Stage[Any]) -> Stage[Any]:
        return SampleGrouper(members, Grouper(self.required_fields, self.on_error, self.error_counts))


@functional("group_wds_samples")
class WdsSampleGrouperIterDataPipe(_SamplePipe):
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
            or repeating one does, and a damaged shard (not a tar, cut short, a damaged member header, a
            member outside the shard): raise, or be dropped (silently, or with a ``DataErrorWarning`` and a
            log record on logger ``"torchdata_s3ext"``); of a damaged shard, the whole samples before the
            damage are kept
        error_counts: where to count bad samples (``incomplete_samples``, ``duplicate_fields``, ``bad_shards``); a new
            :class:`ErrorCounts` by default. The pipe's ``error_counts`` attribute, added up over the processes
            that read the pipe

    Note:
        Keys and fields follow WebDataset: a member ``dir/sub.v1/sample_0001.image.png`` is field
        ``image.png`` of sample ``dir/sub.v1/sample_0001`` (key = path up to the first dot of the file
        name, field lower-cased). A member without a dot in its file name, and WebDataset's ``__name__``
        metadata members, are skipped; a field repeated within a sample raises ``ValueError`` naming the
        URL and the key. A sample never spans two shards, nor two passes over the same shard.
        Directories, links and other non-regular members are skipped.

        Over ``load_from_tar()`` (torchdata 0.9's or ours, with any opener before it), the shards are read by
        our one tar reader, which gives the same members: every error names the shard URL and the last good
        sample key, a damaged shard is found where it is damaged (never taken for its end) and can be
        skipped, and each sample knows where it lies, for checkpoints. ``__url__`` is the shard URL as given to
        the opener. Over other ``(path, stream)`` pairs, the shard URL is read from the path: after the
        stream's shard name where it has one, else after the last ``.tar/``, ``.tar.gz/`` or ``.tgz/``.

    Example:
        >>> import io, tarfile
        >>> import torchdata_s3ext
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> shard = io.BytesIO()
        >>> with tarfile.open(fileobj=shard, mode="w") as tar:
        ...     for member_name, data in [("train/0001.png", b"PNG"), ("train/0001.cls", b"7")]:
        ...         info = tarfile.TarInfo(member_name)
        ...         info.size = len(data)
        ...         tar.addfile(info, io.BytesIO(data))
        >>> url = "s3://bucket/shard-000000.tar"
        >>> dp = IterableWrapper([(url, io.BytesIO(shard.getvalue()))], deepcopy=False)
        >>> list(dp.load_from_tar().group_wds_samples(required_fields=["png"]))
        [{'__key__': 'train/0001', '__url__': 's3://bucket/shard-000000.tar', 'png': b'PNG', 'cls': b'7'}]
    """


    def _stage(self, clock: EpochClock) -> Stage[Any]:
        pairs = tar_loader_source(self.source_datapipe)
        if pairs is not None:
            return self._grouped(TarMembers(shard_stage(pairs, clock, self.ranks)))
        return self._grouped(ForeignMembers(stage_of(self.source_datapipe, clock, self.ranks)))


@functional("load_wds_shards")
class WdsShardLoaderIterDataPipe(_SamplePipe):
    r"""
    Reads ``(shard_url, stream)`` pairs of tar shards, as ``open_s3()`` yields them, into WebDataset samples,
    dicts ``{"__key__": sample_key, "__url__": shard_url, "<field>": bytes, ...}``, where a damaged shard can
    be skipped (functional name: ``load_wds_shards``).

    ``load_from_tar().group_wds_samples()`` gives the same samples. The shard is read forward, one member in
    memory; under ``on_error="skip"`` or ``"warn"`` the samples completed before a damage are yielded, the
    sample it cut is dropped, and the next shard is read. Each stream is closed once read.

    Args:
        source_datapipe: ``(shard_url, stream)`` pairs, e.g. from ``open_s3()``
        required_fields: fields every sample must have, as for ``group_wds_samples()``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``, for damaged shards (counted as
            ``bad_shards``) and for bad samples (as in ``group_wds_samples()``); messages name the URL and
            the (last good) sample key
        error_counts: where to count; a new :class:`ErrorCounts` by default. The pipe's ``error_counts``
            attribute, added up over the processes that read the pipe

    Note:
        Keys, fields and member names follow ``group_wds_samples()``; ``__url__`` is the URL of the pair.
        A store failure (``OSError`` from the stream) is not bad data: it raises whatever ``on_error``.
        ``tarfile`` takes a damaged member header, or a shard cut inside one, for the end of the archive;
        here what follows the last member must be zeros only (or another archive), so such a shard is a
        damaged one too.

    Example:
        >>> import io, tarfile
        >>> import torchdata_s3ext
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> shard = io.BytesIO()
        >>> with tarfile.open(fileobj=shard, mode="w") as tar:
        ...     for member_name, data in [("0001.png", b"PNG"), ("0001.cls", b"7"), ("0002.png", b"PNG")]:
        ...         info = tarfile.TarInfo(member_name)
        ...         info.size = len(data)
        ...         tar.addfile(info, io.BytesIO(data))
        >>> dp = IterableWrapper([("s3://bucket/shard-000000.tar", io.BytesIO(shard.getvalue()))], deepcopy=False)
        >>> dp = dp.load_wds_shards(required_fields=["cls"], on_error="skip")
        >>> [sample["__key__"] for sample in dp], dp.error_counts.incomplete_samples
        (['0001'], 1)
    """


    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return self._grouped(TarMembers(shard_stage(self.source_datapipe, clock, self.ranks)))
