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
import io
import re
import socket
import threading
import time
from typing import Optional, Set, Tuple
from urllib.parse import urlsplit

from ._upload_faults import _SLOW_DOWN, UploadFaultPlan, fault_upload

__all__ = ["FaultPlan", "S3Proxy", "UploadFaultPlan"]

_CHUNK = 64 << 10
_RANGE_START = re.compile(r"^bytes=(\d+)-")
_LISTED_SIZE = re.compile(rb"<Size>(\d+)</Size>")
#: the request kinds a plan can fault
KINDS = ("GET", "HEAD", "LIST")


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


def _request_kind(method: str, path: str) -> str:
    """``"GET"`` for an object GET, ``"LIST"`` for a bucket GET (path-style addressing), ``"HEAD"``, or the
    method of any other request."""
    if method == "GET":
        return "GET" if "/" in urlsplit(path).path.strip("/") else "LIST"
    return method


class _LyingBody:
    """The body an answer of ``kind`` sends under ``plan``'s lying lengths, read as ``read(n)``, and the
    ``Content-Length`` it announces (``None``: the upstream's)."""

    def __init__(self, plan: FaultPlan, kind: str, response: http.client.HTTPResponse) -> None:
        self._response = response
        self._surplus = 0
        self._limit: Optional[int] = None
        self.announced: Optional[int] = None
        self.ends_short = False
        length = response.getheader("Content-Length")
        if response.status not in (200, 206) or length is None:
            return
        if kind == "GET" and (plan.body_shortfall or plan.body_surplus):
            self._surplus = plan.body_surplus
            self._limit = max(0, int(length) - plan.body_shortfall)
            self.ends_short = plan.body_shortfall > 0
            self.announced = int(length) + plan.body_surplus
        elif kind == "HEAD" and plan.head_size_offset:
            self.announced = max(0, int(length) + plan.head_size_offset)
        elif kind == "LIST" and plan.head_size_offset:
            listing = _LISTED_SIZE.sub(lambda m: b"<Size>%d</Size>" % max(0, int(m.group(1)) + plan.head_size_offset),
                                       response.read())
            self._response = io.BytesIO(listing)  # type: ignore[assignment]
            self.announced = len(listing)

    def read(self, size: int) -> bytes:
        if self._limit is not None:
            size = min(size, self._limit)
        chunk = self._response.read(size)
        if self._limit is not None:
            self._limit -= len(chunk)
        if not chunk and self._surplus:
            chunk, self._surplus = b"\0" * self._surplus, 0
        return chunk


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
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass  # cut by a restart: nothing left to flush

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:  # BrokenPipeError, ConnectionResetError, or a socket a restart shut
                    self.close_connection = True  # the client hung up mid-body: its business, not an error

            def _forward(self) -> None:
                if proxy.upload_plan is not None and fault_upload(self, proxy):  # see "Upload faults" below
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                kind = _request_kind(self.command, self.path)
                fault = None
                if response.status in (200, 206) and kind in KINDS:
                    range_start = _RANGE_START.match(self.headers.get("Range") or "")
                    fault = proxy._next_fault(kind, int(range_start.group(1)) if range_start else 0)
                if fault == "slow_down":
                    response.read()
                    upstream.close()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(_SLOW_DOWN)
                    return
                if fault == "black_hole" or (fault == "stall" and kind == "HEAD"):
                    response.read()
                    upstream.close()
                    if fault == "black_hole":  # the request taken, nothing sent back
                        proxy._stopping.wait(proxy.plan.black_hole_seconds)
                        self._hang_up()
                        return
                    proxy._stopping.wait(proxy.plan.stall_seconds)  # a HEAD has no body: its answer is late
                    fault = None
                lying = _LyingBody(proxy.plan, kind, response)
                if proxy.plan.first_byte_latency_s:
                    time.sleep(proxy.plan.first_byte_latency_s)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() == "content-length" and lying.announced is not None:
                        value = str(lying.announced)
                    if name.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                if self.command == "HEAD":
                    upstream.close()
                    return
                try:
                    self._copy_body(lying, fault)
                finally:
                    upstream.close()
                    if fault == "restart":  # even if the client hung up first: the restart was due
                        proxy.restart()

            def _copy_body(self, body: "_LyingBody", fault: Optional[str]) -> None:
                plan = proxy.plan
                sent = 0
                started = time.monotonic()
                rate = plan.bandwidth_bytes_per_s
                cut_at = plan.cut_after_bytes if fault in ("cut", "restart") else None
                stall_at = (_CHUNK if plan.stall_after_bytes is None else plan.stall_after_bytes) if fault == "stall" else None
                while True:
                    chunk = body.read(_CHUNK)
                    if not chunk:
                        break
                    if cut_at is not None and sent + len(chunk) >= cut_at:
                        self.wfile.write(chunk[: max(0, cut_at - sent)])
                        self.wfile.flush()
                        self._hang_up()  # a restart cuts every other connection too, once this GET ends
                        return
                    if stall_at is not None and sent + len(chunk) > stall_at:
                        before = chunk[: max(0, stall_at - sent)]
                        self.wfile.write(before)
                        self.wfile.flush()
                        sent += len(before)
                        chunk = chunk[len(before):]
                        proxy._stopping.wait(plan.stall_seconds)
                        stall_at = None
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if rate:
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                if body.ends_short:
                    self.wfile.flush()
                    self._hang_up()

            def _hang_up(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already cut

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
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

