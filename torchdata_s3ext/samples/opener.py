"""Opening shards: :class:`OpenSettings` (every setting of how to open, checked once where the user gives it),
:func:`open_shard` (one shard slice -> its bytes, on any backend, through the cache) and the ``open`` stage."""
import collections
import dataclasses
import errno
import functools
import inspect
from typing import Any, BinaryIO, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

from .._config import S3Config
from ..s3.backends import PIPE_BACKEND, backend_for_url, check_backend_name, get_opener
from ..s3.cache import open_cached
from ..s3.io.prefetch import OpenAhead, start_after_last_request
from ..s3.stats import PipeStats
from ..s3.url import is_pipe_url, is_s3_url
from ..stage import SOURCE, IterableStage, Stage
from .keywords import check_keywords
from .positions import ShardSlice
from .tar import Shard

__all__ = ["OPENER_OPTIONS", "OpenSettings", "ShardOpener", "open_shard", "split_s3_settings"]

#: ``open_s3``'s own keywords, besides ``backend``, ``config`` and the S3Config fields
OPENER_OPTIONS = ("cache_dir", "cache_limit_bytes", "prefetch")


def _backend_options(backend: str) -> Tuple[List[str], bool]:
    """The options the backend's ``open_url`` names after ``(url, config)``, and whether it passes others on;
    its byte range (``start``, ``end``) is not a user's option."""
    parameters = [parameter for parameter in list(inspect.signature(get_opener(backend)).parameters.values())[2:]
                  if parameter.name not in ("start", "end")]
    named = [parameter.name for parameter in parameters if parameter.kind is not parameter.VAR_KEYWORD]
    return named, any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def split_s3_settings(backend: str, settings: Dict[str, Any], others: Dict[str, Iterable[str]] = {}) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Keyword arguments split into :class:`S3Config` fields and the backend's options (``open_s3``'s own
    ``cache_dir``, ``cache_limit_bytes`` and ``prefetch`` stay with the options). A keyword that is none of
    these (nor one of ``others``, the caller's own sets, named in the message) raises ``TypeError`` naming it
    and the closest valid name, so a misspelt setting fails where it is written; a backend whose opener passes
    further keywords on to its library (``local``, ``iopath``) takes any other keyword but a near miss.

    >>> split_s3_settings("boto3", {"anonymous": True, "part_size": 1 << 20})
    ({'anonymous': True}, {'part_size': 1048576})
    """
    named, passes_others_on = _backend_options(backend)
    check_keywords(
        settings,
        {**others, "S3Config fields": S3Config.field_names(), f"options of backend {backend!r}": named,
         "open_s3 options": OPENER_OPTIONS},
        where=f"backend {backend!r}", open_ended=passes_others_on,
    )
    config_fields = {name: value for name, value in settings.items() if name in S3Config.field_names()}
    return config_fields, {name: value for name, value in settings.items() if name not in config_fields}


@dataclasses.dataclass(frozen=True)
class OpenSettings:
    """How shards are opened: the backend asked for (``"auto"`` chooses per URL), the S3 configuration, the
    backend's options, the local cache and the next-shard prefetch. Made once, with every keyword checked."""

    backend: str = "auto"
    config: S3Config = dataclasses.field(default_factory=S3Config)
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    cache_dir: Optional[str] = None
    cache_limit_bytes: Optional[int] = None
    prefetch: bool = True
    #: what a shard index says of its shards: URL -> (size, ETag); a shard found otherwise is an error
    indexed: Mapping[str, Tuple[Optional[int], Optional[str]]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_keywords(
        cls, backend: str = "auto", config: Optional[S3Config] = None, *, others: Dict[str, Iterable[str]] = {},
        **settings: Any,
    ) -> "OpenSettings":
        """From ``open_s3``'s keywords: any :class:`S3Config` field laid over ``config``, the backend's options,
        ``cache_dir``, ``cache_limit_bytes`` and ``prefetch``."""
        concrete = check_backend_name(backend)
        config_fields, options = split_s3_settings(concrete, settings, others)
        cache_dir = options.pop("cache_dir", None)
        cache_limit_bytes = options.pop("cache_limit_bytes", None)
        prefetch = options.pop("prefetch", True)
        if cache_limit_bytes is not None and (cache_dir is None or cache_limit_bytes < 0):
            raise ValueError(f"cache_limit_bytes needs a cache_dir and must be 0 or more, got {cache_limit_bytes!r}")
        return cls(backend, S3Config.merged(config, **config_fields).resolved(), options,
                   None if cache_dir is None else str(cache_dir), cache_limit_bytes, bool(prefetch))


def _check_url(backend: str, url: str) -> None:
    """``ValueError`` naming ``url`` when ``backend`` cannot open it."""
    if backend == PIPE_BACKEND:
        if not is_pipe_url(url):
            raise ValueError(f"not a pipe: URL (expected pipe:COMMAND) for backend {backend!r}: {url!r}")
    elif backend != "local" and not is_s3_url(url):
        hint = f" (pipe: URLs open with backend='auto' or {PIPE_BACKEND!r})" if is_pipe_url(url) else ""
        raise ValueError(f"not an S3 URL (expected s3://bucket/key) for backend {backend!r}{hint}: {url!r}")


def open_shard(part: ShardSlice, settings: OpenSettings) -> BinaryIO:
    """The bytes of shard slice ``part`` (``part.start`` .. ``part.end``) as a readable binary stream: its URL's
    backend (``"auto"``: ``pipe`` for ``pipe:`` URLs, else boto3), through the cache if there is one. A
    ``pipe:`` URL under ``"auto"`` opens with the ``pipe`` backend's defaults."""
    url = part.url
    backend = backend_for_url(settings.backend, url)
    _check_url(backend, url)
    options = settings.options if backend == check_backend_name(settings.backend) else {}
    open_range = functools.partial(get_opener(backend), url, settings.config, **options)
    byte_range = {} if part.start == 0 and part.end is None else {"start": part.start, "end": part.end}
    stream = open_cached(url, settings.config, open_range, settings.cache_dir, settings.cache_limit_bytes, **byte_range)
    if url in settings.indexed:
        _check_indexed(url, stream, *settings.indexed[url])
    return stream


def _check_indexed(url: str, stream: Any, size: Optional[int], etag: Optional[str]) -> None:
    """``OSError`` naming ``url`` when the opened object is not the one its shard index describes (its size, and
    its ETag where the backend tells it: the ranged backends tell the size, ``boto3`` both)."""
    found_size, found_etag = getattr(stream, "size", None), getattr(stream, "etag", None)
    if (size is not None and found_size is not None and found_size != size) or (etag and found_etag and found_etag != etag):
        stream.close()
        raise OSError(errno.EIO, f"the shard has {found_size} bytes, ETag {found_etag}; its shard index says {size} bytes, "
                                 f"ETag {etag} (rewritten since it was indexed? write the index again)", url)


class ShardOpener(Stage[Shard]):
    """The ``open`` stage: the shard URLs (or :class:`~.positions.ShardSlice`) of its source, opened.

    With ``settings.prefetch``, the next shard is opened on a thread of its own once the current one has
    requested its last part (at once for a stream that reads no parts ahead), at most one shard ahead; its
    errors, and those of the source met while looking ahead, are raised when its shard is reached; a shard
    opened ahead and never handed out is closed. No thread exists before the first shard is handed out.

    Its state goes on after the last shard handed out: the source's state then, and ``"reopen"``: slices to
    open before the source's next ones (how the ``tar`` stage goes on inside a shard)."""

    kind = "open"

    def __init__(self, source: Stage[Any], settings: OpenSettings, stats: Optional[PipeStats] = None) -> None:
        super().__init__(source)
        self.settings = settings
        self.stats = stats if stats is not None else PipeStats()
        self._reopen: Deque[ShardSlice] = collections.deque()
        self._handed: Optional[Dict[str, Any]] = None
        self._ahead: Optional[Tuple[Any, OpenAhead]] = None

    def reset(self, state: Optional[Dict[str, Any]] = None) -> None:
        self._discard_ahead()
        self._reopen = collections.deque(ShardSlice.from_state(part) for part in (state or {}).get("reopen", ()))
        super().reset(state)
        self._handed = None

    def next(self) -> Shard:
        if self._ahead is not None:
            following, ahead = self._ahead
            self._ahead = None
            stream = ahead.result()  # the error of opening it, or of the source while looking ahead
            part, after = following
        else:
            part, after = self._pull()  # StopIteration: the epoch's end
            stream = open_shard(part, self.settings)
        self._handed = after
        if self.settings.prefetch:
            self._open_ahead(stream)
        self.stats.add_this_process()  # the previous shard's requests, for the main process to see
        return Shard(part, stream)

    def state(self) -> Dict[str, Any]:
        if self._handed is None:
            self._handed = self._now()
        source, reopen = self._handed
        return {"stage": self.kind, SOURCE: source, "reopen": reopen}

    def close(self) -> None:
        self._discard_ahead()
        self.stats.add_this_process()
        super().close()

    def reading_of(self, items: Iterable[Any]) -> "ShardOpener":
        return ShardOpener(IterableStage(list(items)), self.settings, self.stats)

    def _now(self) -> Tuple[Dict[str, Any], List[Any]]:
        return self.source.state(), [part.to_state() for part in self._reopen]  # type: ignore[union-attr]

    def _pull(self) -> Tuple[ShardSlice, Tuple[Dict[str, Any], List[Any]]]:
        """The next slice to open, and the state after it."""
        if self._reopen:
            part = self._reopen.popleft()
        else:
            item = self.source.next()  # type: ignore[union-attr]
            part = ShardSlice.of(item if isinstance(item, str) else str(item))
        return part, self._now()

    def _open_ahead(self, current: Any) -> None:
        try:
            following = self._pull()
        except StopIteration:
            return
        except Exception as error:  # the source's failure: raised when the shard it would have given is reached
            following, ahead = None, OpenAhead(functools.partial(_raise, error))
        else:
            ahead = OpenAhead(functools.partial(open_shard, following[0], self.settings))
        self._ahead = (following, ahead)
        start_after_last_request(current, ahead.start)

    def _discard_ahead(self) -> None:
        if self._ahead is not None:
            _, ahead = self._ahead
            self._ahead = None
            ahead.discard()


def _raise(error: BaseException) -> Any:
    raise error
