"""The pipes of opening and tar reading: ``open_s3`` and, where torchdata 0.9's is not installed, ``load_from_tar``."""
import io
import posixpath
from typing import Any, Optional, Tuple

from .._config import S3Config
from torch.utils.data.datapipes.utils.common import StreamWrapper

from ..epochs.clock import EpochClock
from ..s3.stats import PipeStats
from ..samples.opener import OpenSettings, ShardOpener
from ..samples.tar import DamagedShard, Member, PairShards, ShardEnd, TarMembers
from ..epochs.readers import Ranks
from ..stage import Stage
from .datapipes import Pipe, functional, registered_class, stage_of

__all__ = ["S3OpenerIterDataPipe", "TarLoaderIterDataPipe", "shard_stage"]


@functional("open_s3")
class S3OpenerIterDataPipe(Pipe):
    r"""
    Opens shard URLs from S3 (or a local mount) and yields ``(url, stream)`` pairs, which ``load_from_tar()``
    reads (functional name: ``open_s3``).

    Memory stays bounded whatever the shard size (except on the ``s3fileloader`` backend, which downloads
    each object whole): ``boto3``/``auto``, ``fsspec`` and ``iopath`` read ranged parts, several in flight,
    sized to the link within ``memory_budget`` bytes of buffers per open shard (112 MiB by default; 16 MiB x
    6 at first, smaller parts and more of them on a link whose connections are each slow), or ``part_size``
    ranges, ``concurrency`` in flight, into ``(concurrency + 1) * part_size`` bytes when either is given; plus,
    with ``prefetch``, the next shard's first parts: under ``2 * memory_budget`` in all (224 MiB by default;
    ``(2 * concurrency + 1) * part_size`` with fixed sizes), whatever the shard size (``docs/backends.md``);
    the other backends stream forward in large buffered reads. Each process
    (DataLoader worker included) makes its own client on first use; the pipe itself holds none, so it
    pickles under both ``fork`` and ``spawn``.

    ``load_from_tar().group_wds_samples()`` and ``load_wds_shards()`` after it read the shards themselves, so
    that each sample knows where it lies, for checkpoints. A URL that is a
    :class:`~torchdata_s3ext.samples.positions.ShardSlice` (a resumed shard) is opened at its byte range.

    Args:
        source_datapipe: URLs: ``s3://bucket/key``; with ``backend="local"``, local paths / ``file://`` URLs;
            with ``"auto"`` or ``"pipe"``, webdataset's ``pipe:COMMAND`` (the command's stdout, run through the
            shell as written; never retried)
        backend: ``"auto"`` (today ``"boto3"``, and ``"pipe"`` for ``pipe:`` URLs), ``"boto3"``, ``"fsspec"``,
            ``"iopath"``, ``"s3fileloader"``, ``"awscli"``, ``"s3torchconnector"``, ``"local"`` or ``"pipe"``
        endpoint_url: an S3-compatible endpoint; ``None`` reads ``AWS_ENDPOINT_URL``, then uses AWS
        region: the bucket's region; ``None`` reads ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
        config: a full :class:`S3Config` (profile, credentials, anonymous access, timeouts, attempts)
        stats: the counters to add this pipe's requests to (to share them with other pipes, e.g. a listing);
            new ones by default
        cache_dir: a local folder to cache ``s3://`` shards in, shared by every process of the machine: each shard
            is read from S3 once (streamed while it is written), then from disk; one HEAD per open checks the
            copy is the object's current version. See ``docs/cache.md``. ``None`` (default): no cache
        cache_limit_bytes: the most the cache's files take on disk, partial ones included (least recently used
            shards evicted; a larger shard is streamed uncached); ``None`` (default): no limit
        cache_verify: what a copy is checked against before it is kept: ``"auto"`` (default; S3's whole-object
            CRC64NVME, CRC32C or CRC32 when the object has one, else its size and ETag), ``"md5"`` (an MD5 of
            the copy against an MD5 ETag), ``"size"`` (size and ETag only); see ``docs/cache.md``
        prefetch: open the next shard on a thread of its own once the current one has requested its last part
            (at once for a stream that reads no parts ahead), so that its first parts are on the wire when it is
            reached; at most one shard ahead. Its errors are raised when its shard is reached; a shard opened
            ahead and never handed out is closed. Default ``True``
        settings: any :class:`S3Config` field (``anonymous=True``, ``profile=...``, ``max_attempts=...``), laid
            over ``config`` where not ``None``; and the backend's options (``memory_budget``, or
            ``part_size`` and ``concurrency``, for the ranged backends, ``verify_etag`` for ``boto3``, ``aws_command`` for ``awscli``,
            ``request_timeout_ms`` for ``s3fileloader``, ``buffer_size`` for ``pipe``). Any other keyword raises
            ``TypeError`` here, naming it. With ``"auto"``, the options are ``boto3``'s; ``pipe:`` URLs then
            open with the ``pipe`` backend's defaults

    Note:
        A URL that is not ``s3://`` on an S3 backend, a missing bucket or key, denied access or an
        unreachable endpoint raise ``ValueError`` / ``FileNotFoundError`` / ``PermissionError`` /
        ``ConnectionError`` naming the URL. Credentials never appear in messages or ``repr``. A ``pipe:``
        command that ends with a non-zero status or by a signal raises ``OSError`` naming the command, the
        status and the tail of its stderr, also after some bytes, so its shard never ends short in silence.

    Note:
        ``stats`` counts the S3 requests (GET/HEAD/LIST/PUT), our retries and the body bytes received of the
        processes that read the pipe, with their cost (``stats.cost_usd()``): read in the main process, it
        includes what the DataLoader workers did, each worker's counts added as it starts a shard and when its
        pass ends (``stats.over_ranks()`` adds up the ranks too). A process counts all its requests, so
        pipes read by the same processes see the same requests.

    Example:
        >>> import torchdata_s3ext
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> dp = IterableWrapper(["s3://bucket/train/shard-000000.tar"]).open_s3(backend="boto3")
        >>> samples = dp.load_from_tar().group_wds_samples()  # doctest: +SKIP
    """


    def __init__(
        self,
        source_datapipe: Any,
        backend: str = "auto",
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        config: Optional[S3Config] = None,
        stats: Optional[PipeStats] = None,
        **settings: Any,
    ) -> None:
        super().__init__(source_datapipe)
        self.settings = OpenSettings.from_keywords(backend, config, endpoint_url=endpoint_url, region=region, **settings)
        self._stats = stats if stats is not None else PipeStats()

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def config(self) -> S3Config:
        return self.settings.config

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return ShardOpener(self._source_stage(clock), self.settings, self._stats)

    def _output(self, shard: Any) -> Tuple[str, Any]:
        # torch's StreamWrapper, which torch's datapipes (and torchdata 0.9's load_from_tar) expect of a stream
        return shard.slice, StreamWrapper(shard.stream, name=str(shard.slice))

    @property
    def stats(self) -> PipeStats:
        """The live request counters of the processes reading this pipe (see the Note above)."""
        return self._stats

    def __len__(self) -> int:
        return len(self.source_datapipe)


def shard_stage(pairs: Any, clock: EpochClock, ranks: Ranks = None) -> Stage[Any]:
    """Opened shards from what a tar reader is given: our ``open_s3``'s stage, or ``(url, stream)`` pairs from
    anywhere (a foreign opener), each one shard."""
    if isinstance(pairs, S3OpenerIterDataPipe):
        return pairs._stage(clock)
    return PairShards(stage_of(pairs, clock, ranks))


def tar_loader_source(pipe: Any) -> Optional[Any]:
    """The ``(url, stream)`` pairs a ``load_from_tar()`` pipe (torchdata 0.9's or ours) reads, or ``None`` when
    ``pipe`` is none."""
    if isinstance(pipe, TarLoaderIterDataPipe):
        return pipe.source_datapipe
    loader = registered_class("load_from_tar")
    if loader is not None and isinstance(pipe, loader) and hasattr(pipe, "datapipe"):
        return pipe.datapipe  # torchdata 0.9's TarArchiveLoaderIterDataPipe
    return None


class _MemberStream(io.BytesIO):
    """A member's bytes, named as ``load_from_tar()`` names members."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


class _MemberPairs(Stage[Tuple[str, Any]]):
    """Tar members as ``load_from_tar()`` gives them: ``(path, stream)``, the path the shard URL joined with the
    member name and normalised; a damaged shard raises, naming it."""

    kind = "member_pairs"

    def next(self) -> Tuple[str, Any]:
        while True:
            item = self.source.next()  # type: ignore[union-attr]
            if isinstance(item, Member):
                path = posixpath.normpath(posixpath.join(str(item.shard), item.name))
                return path, _MemberStream(item.data, path)
            if isinstance(item, DamagedShard):
                raise type(item.error)(f"bad shard {str(item.shard_url)!r}: {item.error}") from item.error
            assert isinstance(item, ShardEnd)


@functional("load_from_tar", unless_taken=True)
class TarLoaderIterDataPipe(Pipe):
    r"""
    Reads ``(url, stream)`` pairs of tar shards (as ``open_s3()`` gives them) and yields their members as
    ``(path, stream)`` pairs: the path is ``os.path.normpath(os.path.join(url, member_name))`` and the stream a
    binary stream of the member's bytes, as torchdata 0.9's ``load_from_tar()`` gives them (functional name:
    ``load_from_tar``, registered where torchdata 0.9's is not installed).

    Members are read forward, one at a time, with the one tar reader of this package: compressed shards
    (gzip, bzip2, xz) too, directories and other non-regular members skipped; a damaged shard raises an error
    naming it. ``group_wds_samples()`` after it reads the shards itself (and can skip a damaged one).

    Args:
        source_datapipe: ``(url, stream)`` pairs
        mode: kept for torchdata's signature; the compression is read from the shard's first bytes
        length: the number of members, if known (``-1``: unknown)

    Example:
        >>> from torch.utils.data.datapipes.iter import IterableWrapper
        >>> import torchdata_s3ext
        >>> members = IterableWrapper(["s3://bkt/shard-000000.tar"]).open_s3().load_from_tar()  # doctest: +SKIP
    """

    def __init__(self, source_datapipe: Any, mode: str = "r:*", length: int = -1) -> None:
        super().__init__(source_datapipe)
        self.mode = mode
        self.length = length

    def _stage(self, clock: EpochClock) -> Stage[Any]:
        return _MemberPairs(TarMembers(shard_stage(self.source_datapipe, clock, self.ranks)))

    def __len__(self) -> int:
        if self.length < 0:
            raise TypeError(f"{type(self).__name__} instance doesn't have valid length")
        return self.length
