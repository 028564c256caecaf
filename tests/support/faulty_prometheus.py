"""A proxy in front of a real Prometheus that misbehaves on demand, the ways a production one does:
too slow to answer, no series, NaN samples, or samples from minutes ago.

The operator under test talks to `proxy.url`; a test flips `proxy.mode` while it runs. Everything
but the fault is the real Prometheus' answer, so queries, labels and timestamps stay realistic.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import requests

Mode = Literal["healthy", "slow", "empty", "nan", "stale"]


class FaultyPrometheus:
    def __init__(self, upstream: str, server: ThreadingHTTPServer) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.mode: Mode = "healthy"
        self.delay_seconds = 3.0  # "slow": how long before answering
        self.stale_seconds = 300.0  # "stale": how far back every sample is moved
        self._server = server

    @classmethod
    @contextmanager
    def start(cls, upstream: str) -> Iterator[FaultyPrometheus]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        proxy = cls(upstream, server)
        server.proxy = proxy  # type: ignore[attr-defined]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            server.shutdown()
            server.server_close()

    def rewrite(self, document: dict[str, Any]) -> dict[str, Any]:
        """The real answer, with this mode's fault applied to its samples."""
        data = document.get("data") or {}
        if document.get("status") != "success" or data.get("resultType") not in ("vector", "matrix"):
            return document
        if self.mode == "empty":
            data["result"] = []
        elif self.mode in ("nan", "stale"):
            for item in data.get("result") or []:
                if "value" in item:
                    item["value"] = self._point(item["value"])
                if "values" in item:
                    item["values"] = [self._point(p) for p in item["values"]]
        return document

    def _point(self, point: list[Any]) -> list[Any]:
        timestamp, value = point
        if self.mode == "nan":
            return [timestamp, "NaN"]
        return [float(timestamp) - self.stale_seconds, value]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._forward(self.rfile.read(length))

    def _forward(self, body: bytes | None) -> None:
        proxy: FaultyPrometheus = self.server.proxy  # type: ignore[attr-defined]
        if proxy.mode == "slow":
            time.sleep(proxy.delay_seconds)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
        answer = requests.request(
            self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
        )
        payload = answer.content
        if answer.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.dumps(proxy.rewrite(answer.json())).encode()
        try:
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: that is what "slow" is for

    def log_message(self, format: str, *args: Any) -> None:
        return
