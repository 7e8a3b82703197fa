"""An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that injects S3's faults or emulates its link.

Faults, on a schedule over GET requests that carry an object body: ``503 SlowDown`` answers, connections cut
after N body bytes, stalls, black holes (the request taken, nothing ever sent back), and restarts (every open
connection cut mid-body, then the proxy listens again on the same port, as a server restarting does). Link
emulation: a per-connection bandwidth cap and a delay to the first byte, as real S3 behaves (about 90 MB/s
and tens of milliseconds per connection). Uploads (PUT and POST) have faults of their own: see
:class:`UploadFaultPlan`.
"""
import dataclasses
import http.client
import http.server
import re
import socket
import threading
import time
from typing import Optional, Set, Tuple
from urllib.parse import urlsplit

__all__ = ["FaultPlan", "S3Proxy", "UploadFaultPlan"]

_CHUNK = 64 << 10
_RANGE_START = re.compile(r"^bytes=(\d+)-")
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclasses.dataclass
class FaultPlan:
    """What to do to object GETs: every ``slow_down_every``-th answers 503 SlowDown; every ``cut_every``-th
    is cut after ``cut_after_bytes`` body bytes; every ``stall_every``-th stalls ``stall_seconds`` mid-body;
    every ``black_hole_every``-th is answered with nothing at all, its connection held open for
    ``black_hole_seconds`` and then closed; at every ``restart_every``-th the proxy restarts after
    ``cut_after_bytes`` body bytes (see :meth:`S3Proxy.restart`). Only GETs of a range starting at byte
    ``faults_from_byte`` or later are faulted (a client's later parts or a resumed read; 0: every GET), and
    ``max_faults`` bounds the total number of faults injected (``None``: no bound). GETs are numbered in the
    order the upstream answers them."""

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

    def _next_fault(self, range_start: int) -> Optional[str]:
        """Count an object GET (of bytes from ``range_start`` on) and decide its fault, if any."""
        plan = self.plan
        with self._lock:
            self.object_gets += 1
            number = self.object_gets
            if plan.max_faults is not None and self.faults_injected >= plan.max_faults:
                return None
            if range_start < plan.faults_from_byte:
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
                if proxy.upload_plan is not None and _fault_upload(self, proxy):  # see "Upload faults" below
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                fault = None
                if self.command == "GET" and response.status in (200, 206):
                    range_start = _RANGE_START.match(self.headers.get("Range") or "")
                    fault = proxy._next_fault(int(range_start.group(1)) if range_start else 0)
                if fault == "slow_down":
                    response.read()
                    upstream.close()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(_SLOW_DOWN)
                    return
                if fault == "black_hole":
                    response.read()
                    upstream.close()
                    proxy._stopping.wait(proxy.plan.black_hole_seconds)  # the request taken, nothing sent back
                    self._hang_up()
                    return
                if proxy.plan.first_byte_latency_s:
                    time.sleep(proxy.plan.first_byte_latency_s)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.end_headers()
                if self.command == "HEAD":
                    upstream.close()
                    return
                try:
                    self._copy_body(response, fault)
                finally:
                    upstream.close()
                    if fault == "restart":  # even if the client hung up first: the restart was due
                        proxy.restart()

            def _copy_body(self, response: http.client.HTTPResponse, fault: Optional[str]) -> None:
                sent = 0
                started = time.monotonic()
                rate = proxy.plan.bandwidth_bytes_per_s
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        return
                    if fault in ("cut", "restart") and sent + len(chunk) >= proxy.plan.cut_after_bytes:
                        self.wfile.write(chunk[: max(0, proxy.plan.cut_after_bytes - sent)])
                        self.wfile.flush()
                        self._hang_up()  # a restart cuts every other connection too, once this GET ends
                        return
                    if fault == "stall" and sent > 0:
                        time.sleep(proxy.plan.stall_seconds)
                        fault = None
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if rate:
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)

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


# ---- Upload faults -------------------------------------------------------------------------------------------
# PUT and POST requests (PutObject, UploadPart, CreateMultipartUpload, CompleteMultipartUpload): a plan and
# counters of their own, reached through one line at the top of the handler's _forward.

_UPLOAD_ID = re.compile(r"[?&]uploadId=")


@dataclasses.dataclass
class UploadFaultPlan:
    """What to do to uploads: every ``slow_down_every``-th is answered ``503 SlowDown`` (its body read, the
    server never reached); every ``cut_every``-th has its connection cut after ``cut_after_bytes`` bytes of its
    body (the server never reached); every ``lost_answer_every``-th reaches the server, which acts on it, and
    the answer is dropped as the connection is cut (a retried complete then meets ``NoSuchUpload``).
    ``operations`` names the requests that count, of ``"put"`` (PutObject), ``"part"`` (UploadPart),
    ``"create"`` and ``"complete"`` (of a multipart upload); ``max_faults`` bounds the faults (``None``: no
    bound). Requests are numbered in the order the proxy reads their headers; ``S3Proxy.uploads`` counts them
    and ``S3Proxy.upload_faults`` the faults."""

    slow_down_every: int = 0
    cut_every: int = 0
    cut_after_bytes: int = 1000
    lost_answer_every: int = 0
    operations: Tuple[str, ...] = ("put", "part", "create", "complete")
    max_faults: Optional[int] = None


def _upload_operation(command: str, path: str) -> Optional[str]:
    """Which upload a request is, by S3's REST API: ``None`` for every other request (GETs, an abort, ...)."""
    if command == "PUT":
        return "part" if _UPLOAD_ID.search(path) else "put"
    if command == "POST":
        return "complete" if _UPLOAD_ID.search(path) else "create" if re.search(r"[?&]uploads(=|&|$)", path) else None
    return None


def _next_upload_fault(proxy: S3Proxy, operation: str) -> Optional[str]:
    plan = proxy.upload_plan
    assert plan is not None
    if operation not in plan.operations:
        return None
    with proxy._lock:
        proxy.uploads += 1
        if plan.max_faults is not None and proxy.upload_faults >= plan.max_faults:
            return None
        for fault, every in (("slow_down", plan.slow_down_every), ("cut", plan.cut_every),
                             ("lost_answer", plan.lost_answer_every)):
            if every and proxy.uploads % every == 0:
                proxy.upload_faults += 1
                return fault
    return None


def _hang_up(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already cut


def _fault_upload(handler: http.server.BaseHTTPRequestHandler, proxy: S3Proxy) -> bool:
    """Apply the upload plan to this request: ``True`` when it was faulted (and answered, or cut), ``False``
    to let the handler forward it as usual."""
    operation = _upload_operation(handler.command, handler.path)
    fault = _next_upload_fault(proxy, operation) if operation else None
    if fault is None:
        return False
    length = int(handler.headers.get("Content-Length") or 0)
    if fault == "cut":
        handler.rfile.read(min(length, proxy.upload_plan.cut_after_bytes))  # type: ignore[union-attr]
        _hang_up(handler)
        return True
    body = handler.rfile.read(length) if length else None
    if fault == "slow_down":
        handler.send_response(503)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(_SLOW_DOWN)))
        handler.end_headers()
        handler.wfile.write(_SLOW_DOWN)
        return True
    upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
    try:
        headers = {name: value for name, value in handler.headers.items() if name.lower() != "connection"}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        upstream.getresponse().read()  # the server acted on it; its answer goes nowhere
    finally:
        upstream.close()
    _hang_up(handler)
    return True
# ---- end of upload faults ------------------------------------------------------------------------------------
