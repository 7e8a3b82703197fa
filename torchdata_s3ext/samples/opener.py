"""The ``open_s3`` datapipe: shard URLs in, ``(url, binary stream)`` pairs out, on any backend."""
import difflib
import functools
import inspect
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torchdata.datapipes import functional_datapipe
from torchdata.datapipes.iter import IterDataPipe
from torchdata.datapipes.utils import StreamWrapper

from .._config import S3Config
from ..s3.cache import open_cached
from ..s3.prefetch import prefetched
from ..s3.stats import PipeStats
from ..s3.url import is_pipe_url, is_s3_url
from ..s3.backends import PIPE_BACKEND, backend_for_url, check_backend_name, get_opener
from .positions import ShardCursor, ShardSlice

__all__ = ["S3OpenerIterDataPipe", "split_s3_settings"]

#: ``open_s3``'s own keywords that ``wds_pipe`` passes on with the backend's options
_OPENER_OPTIONS = ("cache_dir", "cache_limit_bytes", "prefetch")


def _backend_options(backend: str) -> Tuple[List[str], bool]:
    """The options the backend's ``open_url`` names after ``(url, config)``, and whether it passes others on;
    its byte range (``start``, ``end``) is not a user's option."""
    parameters = [parameter for parameter in list(inspect.signature(get_opener(backend)).parameters.values())[2:]
                  if parameter.name not in ("start", "end")]
    named = [parameter.name for parameter in parameters if parameter.kind is not parameter.VAR_KEYWORD]
    return named, any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def split_s3_settings(backend: str, settings: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Keyword arguments split into :class:`S3Config` fields and the backend's options. A keyword that is
    neither raises ``TypeError`` naming it and the valid ones, so a misspelt setting fails where it is
    written, not at the first URL; a backend whose opener passes further keywords on to its library (``local``,
    ``iopath``) takes any other keyword except a near-miss of a valid one. ``open_s3``'s own ``cache_dir``,
    ``cache_limit_bytes`` and ``prefetch`` stay with the options, for ``open_s3`` to take.

    >>> split_s3_settings("boto3", {"anonymous": True, "part_size": 1 << 20})
    ({'anonymous': True}, {'part_size': 1048576})
    """
    config_fields = {name: value for name, value in settings.items() if name in S3Config.field_names()}
    options = {name: value for name, value in settings.items() if name not in config_fields}
    named, passes_others_on = _backend_options(backend)
    valid = list(S3Config.field_names()) + named + list(_OPENER_OPTIONS)
    for name in options:
        near_misses = difflib.get_close_matches(name, valid, n=1, cutoff=0.8)
        if name not in named and name not in _OPENER_OPTIONS and (near_misses or not passes_others_on):
            hint = f" (did you mean {near_misses[0]!r}?)" if near_misses else ""
            raise TypeError(
                f"unknown keyword argument {name!r} for backend {backend!r}{hint}; S3Config fields: "
                f"{', '.join(S3Config.field_names())}; options of backend {backend!r}: {', '.join(named) or '(none)'}"
            )
    return config_fields, options


def _byte_range(part: ShardSlice) -> Dict[str, Any]:
    """The backend's ``start``/``end`` arguments for a slice of a shard; none for a whole shard."""
    if part.start == 0 and part.end is None:
        return {}
    return {"start": part.start, "end": part.end}


def _check_url(backend: str, url: str) -> None:
    """``ValueError`` naming ``url`` when ``backend`` cannot open it."""
    if backend == PIPE_BACKEND:
        if not is_pipe_url(url):
            raise ValueError(f"not a pipe: URL (expected pipe:COMMAND) for backend {backend!r}: {url!r}")
    elif backend != "local" and not is_s3_url(url):
        hint = f" (pipe: URLs open with backend='auto' or {PIPE_BACKEND!r})" if is_pipe_url(url) else ""
        raise ValueError(f"not an S3 URL (expected s3://bucket/key) for backend {backend!r}{hint}: {url!r}")


@functional_datapipe("open_s3")
class S3OpenerIterDataPipe(IterDataPipe[Tuple[str, StreamWrapper]]):
    r"""
    Opens shard URLs from S3 (or a local mount) and yields ``(url, stream)`` pairs that torchdata's
    ``load_from_tar()`` reads with its default arguments (functional name: ``open_s3``).

    Memory stays bounded whatever the shard size (except on the ``s3fileloader`` backend, which downloads
    each object whole): ``boto3``/``auto``, ``fsspec`` and ``iopath`` read ``part_size`` ranges, ``concurrency``
    in flight, into ``(concurrency + 1) * part_size`` bytes of buffers (16 MiB and 6 by default), plus, with
    ``prefetch``, the next shard's first ``concurrency`` parts: ``(2 * concurrency + 1) * part_size`` in all
    (208 MiB by default), whatever the shard size, and their
    streams are seekable, so ``load_from_tar()`` reads each member in one read and skips unread members
    without downloading them; the other backends stream forward in large buffered reads. Each process
    (DataLoader worker included) makes its own client on first use; the pipe itself holds none, so it
    pickles under both ``fork`` and ``spawn``.

    Each stream carries a ``shard_cursor`` (:mod:`.positions`) that the tar readers and the grouping move, so that
    every sample knows where it lies (``sample.position``), for checkpoints. A URL that is a
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
        prefetch: open the next shard on a thread of its own once the current one has requested its last part
            (at once for a stream that reads no parts ahead), so that its first parts are on the wire when it is
            reached; at most one shard ahead. Its errors are raised when its shard is reached; a shard opened
            ahead and never handed out is closed. Default ``True``
        settings: any :class:`S3Config` field (``anonymous=True``, ``profile=...``, ``max_attempts=...``), laid
            over ``config`` where not ``None``; and the backend's options (``part_size`` and ``concurrency``
            for the ranged backends, ``verify_etag`` for ``boto3``, ``aws_command`` for ``awscli``,
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
        >>> from torchdata.datapipes.iter import IterableWrapper
        >>> dp = IterableWrapper(["s3://bucket/train/shard-000000.tar"]).open_s3(backend="boto3")
        >>> samples = dp.load_from_tar().group_wds_samples()  # doctest: +SKIP
    """

    def __init__(
        self,
        source_datapipe: IterDataPipe[str],
        backend: str = "auto",
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        config: Optional[S3Config] = None,
        stats: Optional[PipeStats] = None,
        cache_dir: Optional[str] = None,
        cache_limit_bytes: Optional[int] = None,
        prefetch: bool = True,
        **settings: Any,
    ) -> None:
        self.source_datapipe = source_datapipe
        self.requested_backend: str = backend  # "auto" chooses per URL (backend_for_url)
        self.backend: str = check_backend_name(backend)
        config_fields, options = split_s3_settings(self.backend, settings)
        self.config: S3Config = S3Config.merged(config, endpoint_url=endpoint_url, region=region, **config_fields).resolved()
        self.backend_kwargs: Dict[str, Any] = options
        self._stats = stats if stats is not None else PipeStats()
        if cache_limit_bytes is not None and (cache_dir is None or cache_limit_bytes < 0):
            raise ValueError(f"cache_limit_bytes needs a cache_dir and must be 0 or more, got {cache_limit_bytes!r}")
        self.cache_dir: Optional[str] = None if cache_dir is None else str(cache_dir)
        self.cache_limit_bytes = cache_limit_bytes
        self.prefetch = bool(prefetch)

    def __iter__(self) -> Iterator[Tuple[str, StreamWrapper]]:
        try:
            openings = (functools.partial(self._open, url) for url in self.source_datapipe)
            for url, stream in prefetched(openings, ahead=self.prefetch):  # its threads start here, after any fork
                self._last_url = url  # names the shard to group_wds_samples when load_from_tar() fails on it
                self._stats.add_this_process()  # the previous shard's requests, for the main process to see
                yield url, stream
        finally:
            self._stats.add_this_process()

    def _open(self, url: str) -> Tuple[str, StreamWrapper]:
        part = ShardSlice.of(url, getattr(url, "item", None))
        backend = backend_for_url(self.requested_backend, url)
        _check_url(backend, url)
        # The options were checked against self.backend; a pipe: URL under "auto" takes the defaults.
        options = self.backend_kwargs if backend == self.backend else {}
        url = str(url)
        open_range = functools.partial(get_opener(backend), url, self.config, **options)
        stream = StreamWrapper(open_cached(url, self.config, open_range, self.cache_dir, self.cache_limit_bytes,
                                           **_byte_range(part)), name=url)
        stream.shard_cursor = ShardCursor(part)  # the tar readers and the grouping move it
        return url, stream

    @property
    def stats(self) -> PipeStats:
        """The live request counters of the processes reading this pipe (see the Note above)."""
        return self._stats

    def __len__(self) -> int:
        return len(self.source_datapipe)
