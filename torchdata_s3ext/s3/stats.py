"""Request accounting: how many GET/HEAD/LIST/PUT requests this process sent to S3, how many of our retries,
how many body bytes came back, and what those requests cost at S3 Standard prices; and the local shard cache's
hits, misses and bytes read from it (``open_s3(cache_dir=...)``), which cost no request but the HEAD.

One :class:`RequestStats` per process (:func:`process_stats`), reset in a child after ``fork`` so each
DataLoader worker counts its own; a pipe's :class:`PipeStats` adds up the processes that read it, so the main
process sees what its DataLoader workers did. botocore clients (boto3's, iopath's through ours, s3fs's aiobotocore) are
counted per HTTP request by an event hook; backends without one (the AWS CLI, the CRT, torchdata's native
handler) count the requests they launch.
"""
import os
import threading
from typing import Any, Dict, Optional

from ..tally import SharedTally, summed_over_ranks

__all__ = ["PipeStats", "RequestStats", "process_stats", "count_botocore_requests", "GET_PRICE_PER_1000",
           "LIST_PRICE_PER_1000"]

#: S3 Standard, USD per 1,000 requests: GET, SELECT and HEAD ...
GET_PRICE_PER_1000 = 0.0004
#: ... and PUT, COPY, POST and LIST
LIST_PRICE_PER_1000 = 0.005

_FIELDS = ("gets", "heads", "lists", "puts", "retries", "bytes_received", "cache_hits", "cache_misses", "bytes_from_cache")
# botocore operation name prefix -> the field its requests count in (DELETE and the rest are free)
_OPERATION_FIELDS = (("Get", "gets"), ("Select", "gets"), ("Head", "heads"), ("List", "lists"), ("Put", "puts"),
                     ("Copy", "puts"), ("Upload", "puts"), ("Create", "puts"), ("Complete", "puts"))


class RequestStats:
    """Counters of S3 requests, our retries and body bytes received, and of shards opened from the local cache
(``cache_hits``), opened past it (``cache_misses``: from S3, whether cached on the way or not) and the bytes
read from it (``bytes_from_cache``); safe to update from any thread.

    Example:
        >>> stats = RequestStats(gets=10_000, lists=1_000)
        >>> round(stats.cost_usd(), 6)
        0.009
        >>> (stats + RequestStats(gets=1)).gets
        10001
    """

    def __init__(self, gets: int = 0, heads: int = 0, lists: int = 0, puts: int = 0, retries: int = 0,
                 bytes_received: int = 0, cache_hits: int = 0, cache_misses: int = 0, bytes_from_cache: int = 0) -> None:
        self._lock = threading.Lock()
        self.gets = gets
        self.heads = heads
        self.lists = lists
        self.puts = puts
        self.retries = retries
        self.bytes_received = bytes_received
        self.cache_hits = cache_hits
        self.cache_misses = cache_misses
        self.bytes_from_cache = bytes_from_cache

    def add(self, **counts: int) -> None:
        """Add to the named counters, e.g. ``add(gets=1, bytes_received=4096)``."""
        unknown = set(counts) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown counters {sorted(unknown)}; counters: {', '.join(_FIELDS)}")
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def snapshot(self) -> "RequestStats":
        """A copy of the counters as they are now (subtract it from a later one for the requests between)."""
        return RequestStats(**self.as_dict())

    def as_dict(self) -> Dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in _FIELDS}

    @property
    def requests(self) -> int:
        """Requests of every kind (the cache's counters are not requests)."""
        counts = self.as_dict()
        return counts["gets"] + counts["heads"] + counts["lists"] + counts["puts"]

    def cost_usd(self) -> float:
        """The requests' price at S3 Standard: GET and HEAD $0.0004, LIST and PUT $0.005 per 1,000."""
        counts = self.as_dict()
        return ((counts["gets"] + counts["heads"]) * GET_PRICE_PER_1000 + (counts["lists"] + counts["puts"]) * LIST_PRICE_PER_1000) / 1000

    def over_ranks(self, group: Optional[Any] = None) -> "RequestStats":
        """These counts added up over every rank of the ``torch.distributed`` group (a collective: every rank
        calls it); as they are when no process group is initialised."""
        return RequestStats(**summed_over_ranks(self.as_dict(), group))

    def reset(self) -> None:
        with self._lock:
            for name in _FIELDS:
                setattr(self, name, 0)

    def _combined(self, other: "RequestStats", sign: int) -> "RequestStats":
        mine, theirs = self.as_dict(), other.as_dict()
        return RequestStats(**{name: mine[name] + sign * theirs[name] for name in _FIELDS})

    def __add__(self, other: "RequestStats") -> "RequestStats":
        """Merged counts, e.g. of several DataLoader workers."""
        return self._combined(other, 1)

    def __sub__(self, other: "RequestStats") -> "RequestStats":
        return self._combined(other, -1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestStats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"RequestStats({', '.join(f'{name}={value}' for name, value in self.as_dict().items())})"

    def __reduce__(self) -> Any:
        return (RequestStats, tuple(self.as_dict().values()))


_process_stats = RequestStats()
os.register_at_fork(after_in_child=_process_stats.reset)


def process_stats() -> RequestStats:
    """This process's live counters (a DataLoader worker's start at zero)."""
    return _process_stats


#: per process, by a pipe's tally file: what this process has added to it, counted from when it first
#: touched the pipe (shared by every copy of a pipe in the process, so that copies do not add twice)
_added_here: Dict[str, RequestStats] = {}
_added_lock = threading.Lock()
os.register_at_fork(after_in_child=_added_here.clear)  # a child's counters start again from zero


class PipeStats:
    """The S3 requests of the processes that read one pipe, added up: the process reading this, plus every
    DataLoader worker that iterated the pipe, each worker's counts added as it starts a shard and when its
    pass ends, each process counted from when it first held the pipe. Reads as a :class:`RequestStats` taken
    now (``stats.gets``, ``stats.cost_usd()``, ``stats.snapshot()``, ``stats - before``). A process counts
    all its requests, so two pipes read by the same processes see the same requests."""

    def __init__(self) -> None:
        self._tally = SharedTally(_FIELDS)
        self._added()

    def __getstate__(self) -> Dict[str, Any]:
        return {"tally": self._tally}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._tally = state["tally"]
        self._added()

    def _added(self) -> RequestStats:
        with _added_lock:
            return _added_here.setdefault(self._tally.path, process_stats().snapshot())

    def add_this_process(self) -> None:
        """Add what this process counted since it last did to the pipe's shared totals."""
        with _added_lock:
            added = _added_here.setdefault(self._tally.path, RequestStats())
            now = process_stats().snapshot()
            _added_here[self._tally.path] = now
        self._tally.add((now - added).as_dict())

    def snapshot(self) -> RequestStats:
        """The totals now: every process's counts added so far, and this process's not yet added."""
        return RequestStats(**self._tally.totals()) + (process_stats().snapshot() - self._added())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.snapshot(), name)

    def __sub__(self, other: RequestStats) -> RequestStats:
        return self.snapshot() - other

    def __add__(self, other: RequestStats) -> RequestStats:
        return self.snapshot() + other

    def __eq__(self, other: object) -> bool:
        return self.snapshot() == other

    def __repr__(self) -> str:
        return repr(self.snapshot())


def _count_request(event_name: str, **_: Any) -> None:
    operation = event_name.rsplit(".", 1)[-1]
    for prefix, field in _OPERATION_FIELDS:
        if operation.startswith(prefix):
            _process_stats.add(**{field: 1})
            return


def count_botocore_requests(events: Any) -> None:
    """Count every HTTP request sent through a botocore (or aiobotocore) client or session's ``events``.

    ``before-send`` fires once per attempt, so botocore's own retries show up as extra requests."""
    events.register("before-send.s3", _count_request, unique_id="torchdata_s3ext.request_stats")
