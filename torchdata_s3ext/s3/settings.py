"""How shards are opened, checked once where the user gives it: :class:`OpenSettings` (the backend, the
:class:`~torchdata_s3ext.S3Config`, the backend's options, the cache, the prefetch), made from ``open_s3``'s and
``wds_pipe``'s keywords by :meth:`OpenSettings.from_keywords`."""
import dataclasses
import inspect
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .._config import S3Config
from .backends import check_backend_name, check_backend_options, get_opener
from .keywords import check_keywords

__all__ = ["CACHE_VERIFY_LEVELS", "OPENER_OPTIONS", "OpenSettings", "split_s3_settings"]

#: ``open_s3``'s own keywords, besides ``backend``, ``config`` and the S3Config fields
OPENER_OPTIONS = ("cache_dir", "cache_limit_bytes", "cache_verify", "prefetch")
#: the values of ``cache_verify``, the default first: what a cache miss's copy is checked against (``docs/cache.md``)
CACHE_VERIFY_LEVELS = ("auto", "md5", "size")


def _check_cache_verify(level: object) -> str:
    """``level`` if it is one of :data:`CACHE_VERIFY_LEVELS`, else ``ValueError`` naming them."""
    if not isinstance(level, str) or level not in CACHE_VERIFY_LEVELS:
        valid = ", ".join(repr(name) for name in CACHE_VERIFY_LEVELS)
        raise ValueError(f"cache_verify must be one of {valid}, got {level!r}")
    return level


def _backend_options(backend: str) -> Tuple[List[str], bool]:
    """The options the backend's ``open_url`` names after ``(url, config)``, and whether it passes others on;
    its byte range (``start``, ``end``) is not a user's option."""
    parameters = [parameter for parameter in list(inspect.signature(get_opener(backend)).parameters.values())[2:]
                  if parameter.name not in ("start", "end")]
    named = [parameter.name for parameter in parameters if parameter.kind is not parameter.VAR_KEYWORD]
    return named, any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def split_s3_settings(backend: str, settings: Dict[str, Any], others: Dict[str, Iterable[str]] = {}) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Keyword arguments split into :class:`S3Config` fields and the backend's options (``open_s3``'s own
    ``cache_dir``, ``cache_limit_bytes``, ``cache_verify`` and ``prefetch`` stay with the options). A keyword
    that is none of these (nor one of ``others``, the caller's own sets, named in the message) raises
    ``TypeError`` naming it and the closest valid name, so a misspelt setting fails where it is written; a
    backend whose opener passes further keywords on to its library (``local``, ``iopath``) takes any other
    keyword but a near miss.

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
    #: what a cache miss's copy is checked against: ``"auto"``, ``"md5"`` or ``"size"`` (``docs/cache.md``)
    cache_verify: str = "auto"
    #: what a shard index says of its shards: URL -> (size, ETag); a shard found otherwise is an error
    indexed: Mapping[str, Tuple[Optional[int], Optional[str]]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_keywords(
        cls, backend: str = "auto", config: Optional[S3Config] = None, *, others: Dict[str, Iterable[str]] = {},
        **settings: Any,
    ) -> "OpenSettings":
        """From ``open_s3``'s keywords: any :class:`S3Config` field laid over ``config``, the backend's options,
        ``cache_dir``, ``cache_limit_bytes``, ``cache_verify`` and ``prefetch``."""
        concrete = check_backend_name(backend)
        config_fields, options = split_s3_settings(concrete, settings, others)
        check_backend_options(concrete, options)
        cache_dir = options.pop("cache_dir", None)
        cache_limit_bytes = options.pop("cache_limit_bytes", None)
        prefetch = options.pop("prefetch", True)
        if "cache_verify" in options and cache_dir is None:
            raise ValueError(f"cache_verify needs a cache_dir, got cache_verify={options['cache_verify']!r} without one")
        cache_verify = _check_cache_verify(options.pop("cache_verify", "auto"))
        if cache_limit_bytes is not None and (cache_dir is None or cache_limit_bytes < 0):
            raise ValueError(f"cache_limit_bytes needs a cache_dir and must be 0 or more, got {cache_limit_bytes!r}")
        return cls(backend, S3Config.merged(config, **config_fields).resolved(), options,
                   None if cache_dir is None else str(cache_dir), cache_limit_bytes, bool(prefetch),
                   cache_verify=cache_verify)

    def options_for(self, backend: str) -> Dict[str, Any]:
        """The options for ``backend``, the one a URL opens with: the user's for the backend they named (or
        ``"auto"``'s choice), none for ``pipe:`` URLs that ``"auto"`` opens with the ``pipe`` backend."""
        return self.options if backend == check_backend_name(self.backend) else {}
