"""A fault-injecting HTTP proxy on loopback, in front of the test STAC API or S3 server.

CDSE answers 429 when a user exceeds the quota (4 connections, 2000 requests a minute), and
its gateways answer 5xx, stall or drop connections on bad days. The component's answers to
that (urllib3 retries for the STAC API, GDAL's retries for /vsis3 reads) are tested by
pointing them at this proxy: each request is matched against a list of :class:`Fault` rules,
the first live rule whose ``path_contains`` matches is applied (and its count used up), and a
request no rule claims is forwarded unchanged to the real upstream (rustac or moto).

It binds 127.0.0.1 only, serves in daemon threads, reads whole bodies (test files are tiny),
and sleeps at most :data:`MAX_DELAY_S` for a delay fault, so a test cannot hang on it.
JSON answers have the upstream's address rewritten to the proxy's, so that links a STAC API
builds from its own address (the search link, ``next`` pages) lead back through the proxy.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["MAX_DELAY_S", "Fault", "FaultProxy"]

MAX_DELAY_S = 10.0
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    """One injected fault for up to ``count`` matching requests (``-1``: every one).

    ``kind``: ``"status"`` answers ``status`` (with ``Retry-After`` if ``retry_after`` is set)
    and a small XML/JSON-free body; ``"delay"`` waits ``delay_s`` before forwarding (longer
    than the client's timeout: the client gives up first); ``"reset"`` closes the connection
    with a TCP reset and no answer.
    """

    kind: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay_s: float = 0.0
    path_contains: str = ""
    method: str | None = None
    used: int = field(default=0, init=False)

    def claims(self, method: str, path: str) -> bool:
        if self.count >= 0 and self.used >= self.count:
            return False
        if self.method is not None and method != self.method:
            return False
        return self.path_contains in path


class FaultProxy:
    """Forward ``http://127.0.0.1:<port>`` to ``upstream`` (``host:port``), injecting faults.

    ``requests`` records ``(method, path, action)`` for every request, where action is
    ``"forward"``, ``"status 503"``, ``"delay"`` or ``"reset"``.
    """

    def __init__(self, upstream: str, faults: list[Fault] | None = None) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = list(faults or [])
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:port``: what ``AWS_S3_ENDPOINT`` wants."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Remove every fault and forget the recorded requests."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def actions(self, path_contains: str = "") -> list[str]:
        with self._lock:
            return [action for _, path, action in self.requests if path_contains in path]

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.claims(method, path):
                    fault.used += 1
                    return fault
            return None

    def _record(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.requests.append((method, path, action))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Silent: the proxy's record is ``proxy.requests``."""

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._pick(self.command, self.path)
            if fault is None:
                proxy._record(self.command, self.path, "forward")
                self._forward(body)
            elif fault.kind == "status":
                proxy._record(self.command, self.path, f"status {fault.status}")
                self._answer_status(fault)
            elif fault.kind == "delay":
                proxy._record(self.command, self.path, "delay")
                time.sleep(min(fault.delay_s, MAX_DELAY_S))
                self._forward(body)
            elif fault.kind == "reset":
                proxy._record(self.command, self.path, "reset")
                self._reset()
            else:
                raise ValueError(f"unknown fault kind {fault.kind!r}")

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle  # noqa: N815

        def _answer_status(self, fault: Fault) -> None:
            payload = f"injected fault: HTTP {fault.status}\n".encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            if fault.retry_after is not None:
                self.send_header("Retry-After", str(fault.retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends RST, what a dropped gateway connection looks like.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _forward(self, body: bytes) -> None:
            host, port = proxy.upstream.rsplit(":", 1)
            upstream = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
            except OSError as error:
                self.send_error(502, f"upstream unreachable: {error}")
                return
            finally:
                upstream.close()
            content_type = response.getheader("Content-Type", "")
            if "json" in content_type:
                payload = payload.replace(proxy.upstream.encode(), proxy.address.encode())
            try:
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() in _HOP_BY_HOP or key.lower() == "content-length":
                        continue
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except OSError:  # the client gave up (timeout): nothing to answer
                self.close_connection = True

    return Handler
