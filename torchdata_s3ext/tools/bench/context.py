"""Where a benchmark's shards are, and how to reach them: the :class:`MethodContext` every method builds its
dataset from."""
import dataclasses
from typing import Any, Dict, Optional, Tuple

from ...s3.backends import BACKENDS

__all__ = ["MethodContext", "RANGED_BACKENDS"]

#: the backends that read ranged parts, several in flight (``part_size``, ``concurrency``, ``memory_budget``)
RANGED_BACKENDS = tuple(name for name, backend in BACKENDS.items() if backend.ranged)


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """Where the shards are: S3 URLs, and optionally the same shards on a local mount (for ``local``-style
    methods); every method reads its list ``repeats`` times over."""

    urls: Tuple[str, ...]
    mount_paths: Optional[Tuple[str, ...]] = None
    endpoint_url: Optional[str] = None
    region: Optional[str] = None
    profile: Optional[str] = None
    anonymous: bool = False
    repeats: int = 1
    #: ``part_size``, ``concurrency`` and ``memory_budget`` for the backends that read ranged parts (``None``:
    #: their defaults, parts sized to the link within 112 MiB)
    part_size: Optional[int] = None
    concurrency: Optional[int] = None
    memory_budget: Optional[int] = None
    #: the ``open_s3`` methods' shard cache (``bench --cache-dir``, see ``cached.py``), and its limit
    cache_dir: Optional[str] = None
    cache_limit_bytes: Optional[int] = None
    #: ``--mix``: ``(name, weight)`` of each dataset the ``wds-*`` methods cut the shard list into
    mix: Optional[Tuple[Tuple[str, float], ...]] = None
    #: the samples of the ``wds-*`` methods' epoch (``samples_per_epoch``; ``None``: one pass over the shards)
    epoch_samples: Optional[int] = None

    @classmethod
    def from_dict(cls, fields: Dict[str, Any]) -> "MethodContext":
        """The context back from ``dataclasses.asdict`` after a trip through JSON (lists made tuples again)."""
        fields = dict(fields)
        for name in ("urls", "mount_paths"):
            fields[name] = tuple(fields[name]) if fields[name] is not None else None
        if fields.get("mix") is not None:
            fields["mix"] = tuple((name, float(weight)) for name, weight in fields["mix"])
        return cls(**fields)

    def s3_config(self) -> Any:
        """The :class:`S3Config` of this endpoint, region, profile and anonymity, environment filled in."""
        from ..._config import S3Config

        return S3Config(endpoint_url=self.endpoint_url, region=self.region, profile=self.profile,
                        anonymous=self.anonymous).resolved()

    def ranged_options(self, backend: str) -> Dict[str, int]:
        if backend not in RANGED_BACKENDS:
            return {}
        options = {"part_size": self.part_size, "concurrency": self.concurrency, "memory_budget": self.memory_budget}
        return {name: value for name, value in options.items() if value is not None}
