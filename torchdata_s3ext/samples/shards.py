"""``load_wds_shards``: ``(shard_url, stream)`` pairs straight to WebDataset samples, a damaged shard being bad data.

The shard is read by our own plain generator (``tar.tar_members``) and grouped by ``grouping.group_by_keys``,
so that a truncated or non-tar shard can be skipped: ``load_from_tar()`` raises out of its own generator,
which ends the pipe.
"""
from typing import IO, Any, Dict, Iterator, Optional, Sequence

from torchdata.datapipes import functional_datapipe

from .grouping import SamplePipe, group_by_keys
from .policy import ErrorCounts
from .tar import tar_members

__all__ = ["WdsShardLoaderIterDataPipe", "shard_samples"]


def shard_samples(
    shard_url: str,
    tar_stream: IO[bytes],
    required_fields: Sequence[str] = (),
    on_error: str = "raise",
    error_counts: Optional[ErrorCounts] = None,
) -> Iterator[Dict[str, Any]]:
    """The WebDataset samples of one tar stream, grouped by :func:`group_by_keys`, member by member.

    A damaged shard (not a tar, cut short, a damaged member header, a member outside the shard) is bad data,
    counted as ``bad_shards``: under ``on_error="skip"`` or ``"warn"`` the samples completed before the damage
    are yielded (the pending one too when the damage lies in a member of another key) and the sample it may
    have cut is dropped, never yielded in part; the message names the URL, the last good sample key and,
    for a damaged header, the byte.

    Raises:
        tarfile.ReadError: (or the error tarfile raised) under ``on_error="raise"``, for a damaged shard
        ValueError: under ``on_error="raise"``, for a bad sample (see :func:`group_by_keys`)
    """
    cursor = getattr(tar_stream, "shard_cursor", None)  # set by open_s3: positions, and the part of the shard wanted
    return group_by_keys(tar_members(shard_url, tar_stream, cursor=cursor), required_fields, on_error, error_counts, cursor)


@functional_datapipe("load_wds_shards")
class WdsShardLoaderIterDataPipe(SamplePipe):
    r"""
    Reads ``(shard_url, stream)`` pairs of tar shards, as ``open_s3()`` yields them, into WebDataset samples,
    dicts ``{"__key__": sample_key, "__url__": shard_url, "<field>": bytes, ...}``, where a damaged shard can
    be skipped (functional name: ``load_wds_shards``).

    ``load_from_tar().group_wds_samples()`` gives the same samples, but a truncated or non-tar shard ends it
    with an error. Here the shard is read by a plain generator (streaming, mode ``r|*``, one member in
    memory), so under ``on_error="skip"`` or ``"warn"`` the samples completed before the damage are yielded,
    the sample it cut is dropped, and the next shard is read. Each stream is closed once read.

    Args:
        source_datapipe: ``(shard_url, stream)`` pairs, e.g. from ``open_s3()``
        required_fields: fields every sample must have, as for ``group_wds_samples()``
        on_error: ``"raise"`` (default), ``"skip"`` or ``"warn"``, for damaged shards (counted as
            ``bad_shards``) and for bad samples (as in ``group_wds_samples()``); messages name the URL and
            the (last good) sample key
        error_counts: where to count; a new :class:`ErrorCounts` by default. The pipe's ``error_counts``
            attribute; counts are per process, each DataLoader worker counts its own

    Note:
        Keys, fields and member names follow ``group_wds_samples()``; ``__url__`` is the URL of the pair.
        A store failure (``OSError`` from the stream) is not bad data: it raises whatever ``on_error``.
        ``tarfile`` takes a damaged member header, or a shard cut inside one, for the end of the archive;
        here what follows the last member must be zeros only, so such a shard is a damaged one too.

    Example:
        >>> import io, tarfile
        >>> import torchdata_s3ext
        >>> from torchdata.datapipes.iter import IterableWrapper
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

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for shard_url, tar_stream in self.source_datapipe:
            try:
                yield from shard_samples(shard_url, tar_stream, self.required_fields, self.on_error, self.error_counts)
            finally:
                tar_stream.close()
