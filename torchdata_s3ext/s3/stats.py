"""Request accounting: how many GET/HEAD/LIST/PUT requests this process sent to S3, how many of our retries,
how many body bytes came back, and what those requests cost at S3 Standard prices.

One :class:`RequestStats` per process (:func:`process_stats`), reset in a child after ``fork`` so each
DataLoader worker counts its own. botocore clients (boto3's, iopath's through ours, s3fs's aiobotocore) are
counted per HTTP request by an event hook; backends without one (the AWS CLI, the CRT, torchdata's native
handler) count the requests they launch.
"""
import os
import threading
from typing import Any, Dict

__all__ = ["RequestStats", "process_stats", "count_botocore_requests", "GET_PRICE_PER_1000", "LIST_PRICE_PER_1000"]

#: S3 Standard, USD per 1,000 requests: GET, SELECT and HEAD ...
GET_PRICE_PER_1000 = 0.0004
#: ... and PUT, COPY, POST and LIST
LIST_PRICE_PER_1000 = 0.005

_FIELDS = ("gets", "heads", "lists", "puts", "retries", "bytes_received")
# botocore operation name prefix -> the field its requests count in (DELETE and the rest are free)
_OPERATION_FIELDS = (("Get", "gets"), ("Select", "gets"), ("Head", "heads"), ("List", "lists"), ("Put", "puts"),
                     ("Copy", "puts"), ("Upload", "puts"), ("Create", "puts"), ("Complete", "puts"))


class RequestStats:
    """Counters of S3 requests, our retries and body bytes received; safe to update from any thread.

    Example:
        >>> stats = RequestStats(gets=10_000, lists=1_000)
        >>> round(stats.cost_usd(), 6)
        0.009
        >>> (stats + RequestStats(gets=1)).gets
        10001
    """

    def __init__(self, gets: int = 0, heads: int = 0, lists: int = 0, puts: int = 0, retries: int = 0,
                 bytes_received: int = 0) -> None:
        self._lock = threading.Lock()
        self.gets = gets
        self.heads = heads
        self.lists = lists
        self.puts = puts
        self.retries = retries
        self.bytes_received = bytes_received

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
        """Requests of every kind."""
        counts = self.as_dict()
        return counts["gets"] + counts["heads"] + counts["lists"] + counts["puts"]

    def cost_usd(self) -> float:
        """The requests' price at S3 Standard: GET and HEAD $0.0004, LIST and PUT $0.005 per 1,000."""
        counts = self.as_dict()
        return ((counts["gets"] + counts["heads"]) * GET_PRICE_PER_1000 + (counts["lists"] + counts["puts"]) * LIST_PRICE_PER_1000) / 1000

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
