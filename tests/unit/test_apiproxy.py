"""The e2e tests' fault-injecting API proxy, against a small local upstream: what it forwards, what it
injects, what it holds back, and what it records."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.apiproxy import ApiProxy

pytestmark = pytest.mark.unit


class Upstream(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization


class UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if "watch=true" in self.path:  # a stream: one event now, then silence until cut
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b'{"type":"ADDED"}\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            time.sleep(30)
            return
        body = json.dumps({"kind": "Status", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PATCH = do_GET


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[ApiProxy]:
    running = ApiProxy(f"http://127.0.0.1:{upstream.server_address[1]}", None)
    yield running
    running.stop()


def request(proxy: ApiProxy, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request(method, path, body=body, headers={"Authorization": "Bearer t0ken"})
    return conn.getresponse()


def test_forwards_with_the_clients_token_and_records_what_reached_the_server(
    proxy: ApiProxy, upstream: Upstream
) -> None:
    response = request(proxy, "PATCH", "/api/v1/nodes/gpu-1", b'{"spec":{}}')
    assert response.status == 200 and json.loads(response.read())["path"] == "/api/v1/nodes/gpu-1"
    assert upstream.seen == [("PATCH", "/api/v1/nodes/gpu-1", "Bearer t0ken")]
    [record] = proxy.requests("PATCH", r"/nodes/")
    assert (record.status, record.forwarded, record.body) == (200, True, b'{"spec":{}}')


def test_injects_a_status_for_so_many_matching_requests_then_forwards(
    proxy: ApiProxy, upstream: Upstream
) -> None:
    rule = proxy.fail("PATCH", r"/scale$", 429, times=2, retry_after=3)
    answers = [
        request(proxy, "PATCH", "/apis/apps/v1/namespaces/a/deployments/b/scale", b"{}") for _ in range(3)
    ]
    assert [r.status for r in answers] == [429, 429, 200]
    assert answers[0].getheader("Retry-After") == "3"
    assert json.loads(answers[0].read())["reason"] == "TooManyRequests"
    assert rule.applied == 2 and len(upstream.seen) == 1
    assert proxy.count("PATCH", r"/scale$") == 1 and proxy.count("PATCH", r"/scale$", forwarded=False) == 3


def test_rules_can_match_on_the_body(proxy: ApiProxy, upstream: Upstream) -> None:
    proxy.fail("PATCH", r"/nodes/", 409, body='"taints"')
    assert request(proxy, "PATCH", "/api/v1/nodes/n", b'{"metadata":{}}').status == 200
    assert request(proxy, "PATCH", "/api/v1/nodes/n", b'{"spec":{"taints":[]}}').status == 409


def test_a_lost_answer_reaches_the_server_but_never_the_client(proxy: ApiProxy, upstream: Upstream) -> None:
    proxy.lose_answer("PATCH", r"/scale$")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        request(proxy, "PATCH", "/x/scale", b"{}")
    assert len(upstream.seen) == 1
    assert proxy.requests("PATCH")[0].forwarded


def test_a_held_request_whose_client_hung_up_is_never_forwarded(proxy: ApiProxy, upstream: Upstream) -> None:
    held = proxy.delay("POST", r"/eviction$", 30)
    conn = socket.create_connection(("127.0.0.1", proxy.port))
    conn.sendall(
        b"POST /api/v1/namespaces/a/pods/p/eviction HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    )
    held.wait(timeout=5)
    conn.close()  # the client is killed while its request is held
    deadline = time.monotonic() + 5
    while held.held and time.monotonic() < deadline:
        time.sleep(0.05)
    held.release()
    assert held.held == 0 and upstream.seen == []
    assert proxy.count("POST", r"/eviction$") == 0


def test_a_released_hold_forwards_at_once(proxy: ApiProxy, upstream: Upstream) -> None:
    held = proxy.delay("DELETE", r"/nodes/", 30)
    answer: list[int] = []
    thread = threading.Thread(
        target=lambda: answer.append(request(proxy, "DELETE", "/api/v1/nodes/n").status)
    )
    thread.start()
    held.wait(timeout=5)
    assert upstream.seen == []
    held.release()
    thread.join(timeout=5)
    assert answer == [501]  # the little upstream has no DELETE; what matters is that it got there


def test_streams_pass_through_and_are_cut_when_connections_are_dropped(proxy: ApiProxy) -> None:
    response = request(proxy, "GET", "/api/v1/pods?watch=true")
    assert response.status == 200
    assert response.readline() == b'{"type":"ADDED"}\n'  # delivered while the stream is still open
    assert proxy.drop_connections() >= 1
    with pytest.raises((http.client.IncompleteRead, ConnectionError, OSError)):
        response.read()


def test_down_refuses_connections_and_comes_back_on_the_same_port(proxy: ApiProxy) -> None:
    port = proxy.port
    with proxy.down(), pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert proxy.port == port
    assert request(proxy, "GET", "/version").status == 200
