"""The bad-data policy: ``on_error="raise" | "skip" | "warn"``, applied to one error, and the counts it keeps.

Bad data is a corrupt or unsupported PNG, a truncated or non-tar shard, a sample lacking a required field or
repeating one. ``"raise"`` (the default) raises the error; ``"skip"`` drops the sample (or the rest of the
shard) and goes on; ``"warn"`` does the same after ``warnings.warn`` (category :class:`DataErrorWarning`) and a
``logging`` warning on logger ``"torchdata_s3ext"``. Messages name the shard URL and the sample key.

Every pipe with an ``on_error`` argument counts what it met, raised or not, in its ``error_counts``
(an :class:`ErrorCounts`). Counts are per process: each DataLoader worker counts in its own copy of the pipe,
and the main process's copy stays at zero.
"""
import dataclasses
import logging
import warnings
from typing import Dict

__all__ = ["ON_ERROR", "DataErrorWarning", "ErrorCounts", "check_on_error", "handle_data_error", "with_message"]

ON_ERROR = ("raise", "skip", "warn")

logger = logging.getLogger("torchdata_s3ext")


class DataErrorWarning(UserWarning):
    """Bad data skipped under ``on_error="warn"``; the message names the shard URL and the sample key."""


@dataclasses.dataclass
class ErrorCounts:
    """How many pieces of bad data a pipe met in this process, by kind."""

    bad_shards: int = 0
    """truncated, non-tar or otherwise unreadable shards (the samples before the damage are kept)"""
    incomplete_samples: int = 0
    """samples lacking one of the required fields"""
    duplicate_fields: int = 0
    """samples with a field given twice"""
    corrupt_images: int = 0
    """samples whose image or label PNG is corrupt, truncated or unsupported"""

    def add(self, kind: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)

    def as_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)

    def total(self) -> int:
        return sum(self.as_dict().values())


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of 'raise', 'skip', 'warn', not {on_error!r}")
    return on_error


def with_message(error: Exception, message: str) -> Exception:
    """An error of ``error``'s type saying ``message`` (a ``ValueError`` if that type takes other arguments),
    with ``error`` as its ``__cause__``."""
    try:
        restated = type(error)(message)
    except TypeError:
        restated = ValueError(message)
    restated.__cause__ = error
    return restated


def handle_data_error(error: Exception, *, kind: str, on_error: str, error_counts: ErrorCounts) -> None:
    """Count ``error`` under ``kind``, then raise it (``"raise"``), warn and log it (``"warn"``) or return (``"skip"``).

    The caller skips the bad sample or shard when this returns; ``str(error)`` must name the URL and key.
    """
    error_counts.add(kind)
    if on_error == "raise":
        raise error
    if on_error == "warn":
        warnings.warn(f"skipped: {error}", DataErrorWarning, stacklevel=3)
        logger.warning("skipped: %s", error)
