"""An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that injects S3's faults or emulates its link.

Faults, on a schedule over GET requests that carry an object body: ``503 SlowDown`` answers, connections cut
after N body bytes, stalls. Link emulation: a per-connection bandwidth cap and a delay to the first byte, as
real S3 behaves (about 90 MB/s and tens of milliseconds per connection).
"""
import dataclasses
import http.client
import http.server
import socket
import threading
import time
from typing import Optional
from urllib.parse import urlsplit

__all__ = ["FaultPlan", "S3Proxy"]

_CHUNK = 64 << 10
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclasses.dataclass
class FaultPlan:
    """What to do to object GETs: every ``slow_down_every``-th answers 503 SlowDown; every ``cut_every``-th
    is cut after ``cut_after_bytes`` body bytes; every ``stall_every``-th stalls ``stall_seconds`` mid-body.
    ``max_faults`` bounds the total number of faults injected (``None``: no bound)."""

    slow_down_every: int = 0
    cut_every: int = 0
    cut_after_bytes: int = 1000
    stall_every: int = 0
    stall_seconds: float = 0.0
    max_faults: Optional[int] = None
    bandwidth_bytes_per_s: Optional[float] = None
    first_byte_latency_s: float = 0.0


class S3Proxy:
    """``with S3Proxy(upstream_endpoint, FaultPlan(cut_every=5)) as proxy:`` then use ``proxy.endpoint_url``."""

    def __init__(self, upstream_endpoint: str, plan: Optional[FaultPlan] = None, host: str = "127.0.0.1") -> None:
        self.upstream = urlsplit(upstream_endpoint)
        self.plan = plan or FaultPlan()
        self.host = host
        self.object_gets = 0
        self.faults_injected = 0
        self._lock = threading.Lock()
        self._server: Optional[http.server.ThreadingHTTPServer] = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "the proxy is not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def _next_fault(self) -> Optional[str]:
        """Count an object GET and decide its fault, if any."""
        plan = self.plan
        with self._lock:
            self.object_gets += 1
            number = self.object_gets
            if plan.max_faults is not None and self.faults_injected >= plan.max_faults:
                return None
            for fault, every in (("slow_down", plan.slow_down_every), ("cut", plan.cut_every), ("stall", plan.stall_every)):
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

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client hung up mid-body: its business, not an error

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                fault = proxy._next_fault() if self.command == "GET" and response.status in (200, 206) else None
                if fault == "slow_down":
                    response.read()
                    upstream.close()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(_SLOW_DOWN)
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
                self._copy_body(response, fault)
                upstream.close()

            def _copy_body(self, response: http.client.HTTPResponse, fault: Optional[str]) -> None:
                sent = 0
                started = time.monotonic()
                rate = proxy.plan.bandwidth_bytes_per_s
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        return
                    if fault == "cut" and sent + len(chunk) >= proxy.plan.cut_after_bytes:
                        self.wfile.write(chunk[: max(0, proxy.plan.cut_after_bytes - sent)])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
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

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "S3Proxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
