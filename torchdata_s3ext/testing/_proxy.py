"""An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that injects S3's faults, lies about lengths, or
emulates its link.

Faults, on a schedule over the requests of the kinds asked for (GETs that carry a body, objects' and
listings', by default; HEADs too): ``503 SlowDown`` answers, connections cut after N body bytes, stalls,
black holes (the request taken, nothing ever sent back), and restarts (every open connection cut mid-body,
then the proxy listens again on the same port, as a server restarting does). Lying lengths, on every request:
bodies shorter or longer than their ``Content-Length`` or range says, and HEADs and listings that give each
object another size than its GETs deliver. Link emulation: a per-connection bandwidth cap and a delay to the
first byte, as real S3 behaves (about 90 MB/s and tens of milliseconds per connection). Uploads (PUT and POST)
have faults of their own: see :class:`UploadFaultPlan`.
"""
import dataclasses
import http.client
import http.server
import socket
import threading
from typing import Optional, Set, Tuple
from urllib.parse import urlsplit

from ._proxy_handler import KINDS, ProxyHandler
from ._upload_faults import UploadFaultPlan

__all__ = ["FaultPlan", "S3Proxy", "UploadFaultPlan"]



@dataclasses.dataclass
class FaultPlan:
    """What to do to requests of the ``fault_kinds`` (``"GET"``: object GETs; ``"LIST"``: bucket GETs, listings;
    by default both, every GET that carries a body; ``"HEAD"``: object and bucket HEADs): every ``slow_down_every``-th answers 503
    SlowDown; every ``cut_every``-th is cut after ``cut_after_bytes`` body bytes; every ``stall_every``-th
    stalls ``stall_seconds`` mid-body (after its first 64 KiB chunk, or after ``stall_after_bytes`` body bytes
    when given; a HEAD, which has no body, before its answer); every ``black_hole_every``-th is answered with
    nothing at all, its connection held open for ``black_hole_seconds`` and then closed; at every
    ``restart_every``-th the proxy restarts after ``cut_after_bytes`` body bytes (see :meth:`S3Proxy.restart`).
    Only GETs of a range starting at byte ``faults_from_byte`` or later are faulted (a client's later parts or
    a resumed read; 0: every GET), and ``max_faults`` bounds the total number of faults injected (``None``: no
    bound). Requests are numbered in the order the upstream answers them.

    Lying lengths, on every answer, outside the schedule: an object GET's body ends ``body_shortfall`` bytes
    before its ``Content-Length`` (then the connection is closed), or carries ``body_surplus`` bytes more than
    the range asked for (NULs, counted in its ``Content-Length``; its ``Content-Range`` unchanged); HEADs and
    listings give each object's size ``head_size_offset`` bytes off what its GETs deliver."""

    slow_down_every: int = 0
    cut_every: int = 0
    cut_after_bytes: int = 1000
    stall_every: int = 0
    stall_seconds: float = 0.0
    black_hole_every: int = 0
    black_hole_seconds: float = 10.0
    restart_every: int = 0
    faults_from_byte: int = 0
    max_faults: Optional[int] = None
    bandwidth_bytes_per_s: Optional[float] = None
    first_byte_latency_s: float = 0.0
    fault_kinds: Tuple[str, ...] = ("GET", "LIST")
    stall_after_bytes: Optional[int] = None
    body_shortfall: int = 0
    body_surplus: int = 0
    head_size_offset: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown request kinds {sorted(unknown)}; valid kinds: {', '.join(KINDS)}")
        if self.body_shortfall < 0 or self.body_surplus < 0:
            raise ValueError("body_shortfall and body_surplus are byte counts, 0 or more")


class S3Proxy:
    """``with S3Proxy(upstream_endpoint, FaultPlan(cut_every=5)) as proxy:`` then use ``proxy.endpoint_url``."""

    def __init__(self, upstream_endpoint: str, plan: Optional[FaultPlan] = None, host: str = "127.0.0.1",
                 upload_plan: Optional["UploadFaultPlan"] = None) -> None:
        self.upstream = urlsplit(upstream_endpoint)
        self.plan = plan or FaultPlan()
        self.upload_plan = upload_plan  # faults of uploads: see the block "Upload faults" at the end
        self.uploads = 0
        self.upload_faults = 0
        self.host = host
        self.object_gets = 0
        self.faulted_kind_requests = 0  # the requests of the plan's fault_kinds, numbered for its schedule
        self.faults_injected = 0
        self.restarts = 0
        self._lock = threading.Lock()
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._port = 0
        self._connections: Set[socket.socket] = set()
        self._stopping = threading.Event()  # ends black holes early when the proxy stops or restarts

    @property
    def endpoint_url(self) -> str:
        assert self._port, "the proxy is not started"
        return f"http://{self.host}:{self._port}"

    def _next_fault(self, kind: str, range_start: int) -> Optional[str]:
        """Count a request of ``kind`` (a GET of bytes from ``range_start`` on) and decide its fault, if any."""
        plan = self.plan
        with self._lock:
            if kind in ("GET", "LIST"):
                self.object_gets += 1  # every GET answered with a body, as the name has always counted
            if kind not in plan.fault_kinds:
                return None
            self.faulted_kind_requests += 1
            number = self.faulted_kind_requests
            if plan.max_faults is not None and self.faults_injected >= plan.max_faults:
                return None
            if kind == "GET" and range_start < plan.faults_from_byte:
                return None
            schedule = (("slow_down", plan.slow_down_every), ("cut", plan.cut_every), ("stall", plan.stall_every),
                        ("black_hole", plan.black_hole_every), ("restart", plan.restart_every))
            for fault, every in schedule:
                if every and number % every == 0:
                    self.faults_injected += 1
                    return fault
        return None

    def start(self) -> "S3Proxy":
        handler = type("Handler", (ProxyHandler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer((self.host, 0), handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._serve()
        return self

    def _serve(self) -> None:
        assert self._server is not None
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="s3-proxy", daemon=True).start()

    def _cut_connections(self) -> None:
        """Cut every open connection (bodies mid-transfer included) and end every black hole."""
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        self._stopping = threading.Event()

    def restart(self) -> None:
        """Stop serving, cut every open connection, and serve again on the same port, as a server restarting
        does. The listening socket stays open meanwhile: a client connecting during the restart waits in its
        backlog instead of being refused, so what every client meets is its connections cut. ``restarts``
        counts them."""
        assert self._server is not None, "the proxy is not started"
        with self._lock:
            self.restarts += 1
        self._server.shutdown()  # returns once no request is accepted any more
        self._cut_connections()
        self._serve()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._cut_connections()

    def __enter__(self) -> "S3Proxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

