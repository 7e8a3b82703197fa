"""The request handler of :class:`~._proxy.S3Proxy`: each request forwarded to the upstream endpoint, its
answer faulted (503 SlowDown, a cut, a stall, a black hole, a restart), its lengths lied about, its link
slowed, as the proxy's :class:`~._proxy.FaultPlan` says."""
import http.client
import http.server
import io
import re
import socket
import time
from typing import Any, Optional
from urllib.parse import urlsplit

from ._upload_faults import _SLOW_DOWN, fault_upload

__all__ = ["KINDS", "ProxyHandler"]

_CHUNK = 64 << 10
_RANGE_START = re.compile(r"^bytes=(\d+)-")
_LISTED_SIZE = re.compile(rb"<Size>(\d+)</Size>")
#: the request kinds a plan can fault
KINDS = ("GET", "HEAD", "LIST")


def _request_kind(method: str, path: str) -> str:
    """``"GET"`` for an object GET, ``"LIST"`` for a bucket GET (path-style addressing), ``"HEAD"``, or the
    method of any other request."""
    if method == "GET":
        return "GET" if "/" in urlsplit(path).path.strip("/") else "LIST"
    return method


class _LyingBody:
    """The body an answer of ``kind`` sends under ``plan``'s lying lengths, read as ``read(n)``, and the
    ``Content-Length`` it announces (``None``: the upstream's)."""

    def __init__(self, plan: Any, kind: str, response: http.client.HTTPResponse) -> None:
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


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """One connection to the proxy: each request forwarded upstream, its answer faulted as the proxy's plan
    says. A subclass made by :meth:`~._proxy.S3Proxy.start` names its ``proxy``."""

    proxy: Any = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.proxy._lock:
            self.proxy._connections.add(self.connection)

    def finish(self) -> None:
        with self.proxy._lock:
            self.proxy._connections.discard(self.connection)
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
        """Forward the request upstream and send its answer back, faulted as the plan says."""
        proxy = self.proxy
        if proxy.upload_plan is not None and fault_upload(self, proxy):  # see _upload_faults
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        kind = _request_kind(self.command, self.path)
        fault = self._fault_of(kind, response)
        if fault in ("slow_down", "black_hole") or (fault == "stall" and kind == "HEAD"):
            response.read()
            upstream.close()
            if not self._answer_without_body(fault):
                return
            fault = None  # a HEAD stalled before its answer: answered now
        lying = _LyingBody(proxy.plan, kind, response)
        self._send_head(response, lying)
        if self.command == "HEAD":
            upstream.close()
            return
        try:
            self._copy_body(lying, fault)
        finally:
            upstream.close()
            if fault == "restart":  # even if the client hung up first: the restart was due
                proxy.restart()

    def _fault_of(self, kind: str, response: http.client.HTTPResponse) -> Optional[str]:
        """The fault the plan has for this answer, if any (only successful answers of the kinds it knows)."""
        if response.status not in (200, 206) or kind not in KINDS:
            return None
        range_start = _RANGE_START.match(self.headers.get("Range") or "")
        return self.proxy._next_fault(kind, int(range_start.group(1)) if range_start else 0)

    def _answer_without_body(self, fault: Optional[str]) -> bool:
        """A 503 SlowDown, a black hole (the request taken, nothing sent back), or a HEAD's late answer (whether
        the answer is still to be sent)."""
        plan = self.proxy.plan
        if fault == "slow_down":
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(_SLOW_DOWN)
            return False
        if fault == "black_hole":
            self.proxy._stopping.wait(plan.black_hole_seconds)
            self._hang_up()
            return False
        self.proxy._stopping.wait(plan.stall_seconds)  # a HEAD has no body: its answer is late
        return True

    def _send_head(self, response: http.client.HTTPResponse, lying: _LyingBody) -> None:
        """The upstream's status and headers, after the link's first-byte delay, with the length ``lying`` says."""
        if self.proxy.plan.first_byte_latency_s:
            time.sleep(self.proxy.plan.first_byte_latency_s)
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() == "content-length" and lying.announced is not None:
                value = str(lying.announced)
            if name.lower() not in ("connection", "transfer-encoding"):
                self.send_header(name, value)
        self.end_headers()

    def _copy_body(self, body: "_LyingBody", fault: Optional[str]) -> None:
        """The body, at the link's rate, cut or stalled as ``fault`` says."""
        plan = self.proxy.plan
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
                self.proxy._stopping.wait(plan.stall_seconds)
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
