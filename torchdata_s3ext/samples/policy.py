"""The bad-data policy: ``on_error="raise" | "skip" | "warn"``, applied to one error, and the counts it keeps.

Bad data is a corrupt or unsupported PNG, a truncated or non-tar shard, a sample lacking a required field or
repeating one. ``"raise"`` (the default) raises the error; ``"skip"`` drops the sample (or the rest of the
shard) and goes on; ``"warn"`` does the same after ``warnings.warn`` (category :class:`DataErrorWarning`) and a
``logging`` warning on logger ``"torchdata_s3ext"``. Messages name the shard URL and the sample key.

Every pipe with an ``on_error`` argument counts what it met, raised or not, in its ``error_counts``
(an :class:`ErrorCounts`). The counts are shared by the processes that read the pipe: what DataLoader
workers met shows in the main process's ``error_counts`` (see :class:`~torchdata_s3ext.tally.SharedTally`);
``over_ranks()`` adds up the ranks of a ``torch.distributed`` group too.
"""
import logging
import warnings
from typing import Any, Dict, Optional

from ..tally import SharedTally, summed_over_ranks

__all__ = ["ON_ERROR", "DataErrorWarning", "ErrorCounts", "check_on_error", "handle_data_error", "with_message"]

ON_ERROR = ("raise", "skip", "warn")

logger = logging.getLogger("torchdata_s3ext")


class DataErrorWarning(UserWarning):
    """Bad data skipped under ``on_error="warn"``; the message names the shard URL and the sample key."""


class ErrorCounts:
    """How many pieces of bad data a pipe met, by kind, added up over the processes that read it (the main
    process and its DataLoader workers).

    Example:
        >>> counts = ErrorCounts(bad_shards=1)
        >>> counts.add("corrupt_images")
        >>> counts.as_dict(), counts.total()
        ({'bad_shards': 1, 'incomplete_samples': 0, 'duplicate_fields': 0, 'corrupt_images': 1}, 2)
    """

    #: the kinds, each an attribute: ``bad_shards`` (truncated, non-tar or otherwise unreadable shards; the
    #: samples before the damage are kept), ``incomplete_samples`` (lacking a required field),
    #: ``duplicate_fields`` (a field given twice), ``corrupt_images`` (a corrupt, truncated or unsupported PNG)
    KINDS = ("bad_shards", "incomplete_samples", "duplicate_fields", "corrupt_images")

    def __init__(self, **counts: int) -> None:
        unknown = set(counts) - set(self.KINDS)
        if unknown:
            raise TypeError(f"unknown kinds {sorted(unknown)}; kinds: {', '.join(self.KINDS)}")
        self._tally = SharedTally(self.KINDS)
        self._tally.add(counts)

    def add(self, kind: str) -> None:
        self._tally.add({kind: 1})

    def __getattr__(self, name: str) -> Any:
        if name in ErrorCounts.KINDS:
            return self._tally.totals()[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def as_dict(self) -> Dict[str, int]:
        return self._tally.totals()

    def total(self) -> int:
        return sum(self.as_dict().values())

    def over_ranks(self, group: Optional[Any] = None) -> Dict[str, int]:
        """The counts added up over every rank of the ``torch.distributed`` group (a collective: every rank
        calls it); this process's alone when no process group is initialised."""
        return summed_over_ranks(self.as_dict(), group)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorCounts) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"ErrorCounts({', '.join(f'{name}={value}' for name, value in self.as_dict().items())})"


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
