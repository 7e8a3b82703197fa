"""Faults of uploads for :class:`~._proxy.S3Proxy`: PUT and POST requests (PutObject, UploadPart,
CreateMultipartUpload, CompleteMultipartUpload) answered ``503 SlowDown``, cut mid-body, or acted on by the
server with the answer lost; a plan and counters of their own, reached through one line of the proxy's handler."""
import dataclasses
import http.client
import http.server
import re
import socket
from typing import Any, Optional, Tuple

__all__ = ["UploadFaultPlan", "fault_upload"]

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

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


def _next_upload_fault(proxy: Any, operation: str) -> Optional[str]:
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


def fault_upload(handler: http.server.BaseHTTPRequestHandler, proxy: Any) -> bool:
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
