"""A fault-injecting proxy between the operator and the real kube-apiserver, for e2e tests.

The operator talks plain HTTP to the proxy (`write_kubeconfig`), the proxy talks TLS to the API
server (verified with the cluster's CA) and forwards everything, streaming watches included. It holds
no credentials of its own: each client's bearer token is passed through, so an operator logged in as
the chart's ServiceAccount keeps exactly the chart's RBAC.

    with ApiProxy.running(identity_kubeconfig) as proxy:
        proxy.fail("PATCH", r"/deployments/web/scale$", status=429, times=3, retry_after=1)
        proxy.lose_answer("PATCH", r"/deployments/web/scale$")   # applied, but the answer never comes
        held = proxy.delay("POST", r"/eviction$", seconds=120, skip=1)   # hold the 2nd eviction
        held.wait(); ...; held.release()
        proxy.drop_connections()              # every open connection at once, watches included
        with proxy.down(): ...                 # the port refuses connections meanwhile
        proxy.count("POST", r"/pods/web-1/eviction$")   # what reached the API server
        proxy.peak_connections("kopf")        # most connections open at once, by User-Agent

Rules are tried in the order they were added; the first one that acts on a request takes it. A held
request whose client goes away (the operator was killed) is never forwarded: the client died
before its request reached the API server. When the API server cannot be reached, the client's
connection is dropped without an answer, as a dead API server would leave it.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.support.chart import SESSION_IDENTITY
from tests.support.cluster import Cluster

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host",
}  # fmt: skip
REASONS = {
    403: "Forbidden",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass
class Record:
    """One request as the proxy saw it. `status` 0: never answered (held and abandoned, or dropped)."""

    method: str
    path: str
    query: str
    body: bytes
    at: float
    status: int = 0
    forwarded: bool = False  # reached the API server
    injected: bool = False  # answered by a rule, not by the API server


@dataclass
class Rule:
    """What to do with requests matching `method` and `path` (and `body`, a substring, if given):
    answer `status` (with `retry_after`), hold them `delay` seconds before forwarding, or forward them
    and cut the connection instead of answering (`lose_answer`); for the first `times` matches after
    `skip`, or all of them when `times` is None."""

    method: str
    path: re.Pattern[str]
    body: bytes | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    times: int | None = 1
    skip: int = 0
    lose_answer: bool = False
    seen: int = 0  # matching requests so far
    applied: int = 0  # of which this rule acted on
    held: int = 0  # held right now
    released: threading.Event = field(default_factory=threading.Event, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def matches(self, method: str, path: str, body: bytes) -> bool:
        return (
            method == self.method
            and self.path.search(path) is not None
            and (self.body is None or self.body in body)
        )

    def take(self) -> bool:
        """Count a match; True when this one is acted on."""
        with self._changed:
            self.seen += 1
            if self.seen <= self.skip or self.released.is_set():
                return False
            if self.times is not None and self.applied >= self.times:
                return False
            self.applied += 1
            self._changed.notify_all()
            return True

    def wait(self, count: int = 1, timeout: float = 60) -> None:
        """Until `count` requests are held by this rule (a delay) or were answered by it (a status)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (self.held if self.delay else self.applied) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.method} {self.path.pattern}: {self.seen} seen, {self.applied} acted on, "
                        f"{self.held} held; waited for {count}"
                    )
                self._changed.wait(min(left, 0.5))

    def release(self) -> None:
        """Stop acting: held requests go on at once, later ones are forwarded untouched."""
        self.released.set()

    def holding(self, delta: int) -> None:
        with self._changed:
            self.held += delta
            self._changed.notify_all()


class ApiProxy:
    def __init__(self, upstream: str, ca_data: bytes | None, port: int = 0) -> None:
        parsed = urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.upstream_tls = parsed.scheme == "https"
        self._ssl = ssl.create_default_context(cadata=ca_data.decode() if ca_data else None)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._records: list[Record] = []
        self._sockets: set[socket.socket] = set()
        self._agents: dict[socket.socket, str] = {}  # client connection -> its User-Agent's product
        self._open: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self.port = port
        self.kubeconfig = ""  # written by write_kubeconfig
        self.serve()

    # -- life cycle ---------------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def running(cls, kubeconfig: str) -> Iterator[ApiProxy]:
        """A proxy to the API server of `kubeconfig` (its server and CA), stopped afterwards."""
        cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca = Path(cluster["certificate-authority"]).read_bytes()
        proxy = cls(str(cluster["server"]), ca)
        try:
            yield proxy
        finally:
            proxy.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self) -> None:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(server.server_address[1])
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self) -> None:
        for rule in self._rules:
            rule.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.drop_connections()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The API server unreachable: open connections dropped, new ones refused, until the block
        ends; then the proxy listens on the same port again."""
        self.stop()
        try:
            yield
        finally:
            self.serve()

    def drop_connections(self) -> int:
        """Cut every open connection (both sides) at once, as a restarting API server would."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(sockets)

    def write_kubeconfig(self, path: Path, identity_kubeconfig: str) -> str:
        """A kubeconfig at `path` pointing at the proxy, with the bearer token of `identity_kubeconfig`."""
        user = yaml.safe_load(Path(identity_kubeconfig).read_text())["users"][0]["user"]
        if not user.get("token"):
            raise ValueError(f"{identity_kubeconfig} has no bearer token: the proxy passes tokens only")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "operator", "user": {"token": user["token"]}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "operator"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        self.kubeconfig = str(path)
        return self.kubeconfig

    # -- faults -------------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int | None = 1,
        retry_after: float | None = None,
        skip: int = 0,
        body: str | None = None,
    ) -> Rule:
        """Answer matching requests with `status` instead of forwarding them."""
        return self._add(Rule(method, re.compile(path), _bytes(body), status, retry_after, 0.0, times, skip))

    def lose_answer(self, method: str, path: str, *, times: int | None = 1, body: str | None = None) -> Rule:
        """Forward matching requests, then cut the connection: applied, but the client never knows."""
        rule = Rule(method, re.compile(path), _bytes(body), None, None, 0.0, times, 0, lose_answer=True)
        return self._add(rule)

    def delay(
        self,
        method: str,
        path: str,
        seconds: float,
        *,
        times: int | None = 1,
        skip: int = 0,
        body: str | None = None,
    ) -> Rule:
        """Hold matching requests `seconds` (or until released) before forwarding them."""
        return self._add(Rule(method, re.compile(path), _bytes(body), None, None, seconds, times, skip))

    def clear(self) -> None:
        """Remove every rule; held requests go on."""
        with self._lock:
            rules, self._rules = self._rules, []
        for rule in rules:
            rule.release()

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _rule_for(self, method: str, path: str, body: bytes) -> Rule | None:
        with self._lock:
            return next((r for r in self._rules if r.matches(method, path, body) and r.take()), None)

    # -- what was seen -------------------------------------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[Record]:
        pattern = re.compile(path) if path else None
        with self._lock:
            return [
                r
                for r in self._records
                if (method is None or r.method == method) and (pattern is None or pattern.search(r.path))
            ]

    def count(self, method: str, path: str, *, forwarded: bool = True) -> int:
        """Matching requests; by default only those that reached the API server."""
        return sum(1 for r in self.requests(method, path) if r.forwarded or not forwarded)

    def peak_connections(self, product: str) -> int:
        """Most client connections open at once whose requests came with User-Agent `product/...`."""
        with self._lock:
            return self._peak[product]

    def _classify(self, sock: socket.socket, user_agent: str) -> None:
        product = user_agent.split("/", 1)[0]
        with self._lock:
            if sock in self._agents:
                return
            self._agents[sock] = product
            self._open[product] += 1
            self._peak[product] = max(self._peak[product], self._open[product])

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            product = self._agents.pop(sock, None)
            if product is not None:
                self._open[product] -= 1

    def _record(self, record: Record) -> Record:
        with self._lock:
            self._records.append(record)
        return record

    def _track(self, sock: socket.socket | None, add: bool) -> None:
        if sock is None:
            return
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.upstream_tls:
            conn = http.client.HTTPSConnection(
                self.upstream_host, self.upstream_port, context=self._ssl, timeout=600
            )
        else:
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=600)
        conn.connect()
        self._track(conn.sock, True)
        return conn


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # watch threads live until their connection is cut
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a cut connection is the point of this server, not an error to print


class _Handler(BaseHTTPRequestHandler):
    owner: ApiProxy
    protocol_version = "HTTP/1.1"
    upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        self.owner._track(self.connection, False)
        self.owner._forget(self.connection)
        self._close_upstream()
        with suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding") or self.headers.get("Upgrade"):
            self._answer(411 if self.headers.get("Transfer-Encoding") else 501, None, "not supported")
            return
        self.owner._classify(self.connection, self.headers.get("User-Agent") or "")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        record = self.owner._record(Record(self.command, split.path, split.query, body, time.time()))
        rule = self.owner._rule_for(self.command, split.path, body)
        if rule is not None and rule.delay and not self._hold(rule):
            self.close_connection = True  # the client is gone: its request never reaches the server
            return
        if rule is not None and rule.status is not None:
            record.status, record.injected = rule.status, True
            self._answer(rule.status, rule.retry_after, "injected by the test's API proxy")
            return
        self._forward(body, record, relay=rule is None or not rule.lose_answer)

    def _hold(self, rule: Rule) -> bool:
        """Wait out the rule's delay; False when the client hung up meanwhile."""
        rule.holding(+1)
        try:
            deadline = time.monotonic() + rule.delay
            while time.monotonic() < deadline and not rule.released.wait(0.1):
                if self._client_gone():
                    return False
            return not self._client_gone()
        finally:
            rule.holding(-1)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _answer(self, status: int, retry_after: float | None, message: str) -> None:
        reason = REASONS.get(status, "Unknown")
        details = {"retryAfterSeconds": int(retry_after)} if retry_after else {}
        payload = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "details": details,
                "code": status,
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        self.end_headers()
        self.wfile.write(payload)

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.owner._track(self.upstream.sock, False)
            self.upstream.close()
            self.upstream = None

    def _forward(self, body: bytes, record: Record, relay: bool = True) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        response: http.client.HTTPResponse | None = None
        for _ in range(2):
            reused = self.upstream is not None
            try:
                if self.upstream is None:
                    self.upstream = self.owner._connect()
                self.upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = self.upstream.getresponse()
                break
            except (OSError, http.client.HTTPException):
                self._close_upstream()
                if not reused:
                    break  # a fresh connection failed too: the API server is not there
        if response is None:
            self.close_connection = True  # cut, no answer: what a dead API server leaves the client
            return
        record.forwarded, record.status = True, response.status
        if not relay:
            response.read()
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self._relay(response)
        except (OSError, http.client.HTTPException):
            self.close_connection = True
            self._close_upstream()
        if response.will_close:
            self._close_upstream()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("Content-Length")
        bodiless = self.command == "HEAD" or response.status in (204, 304)
        if length is None and not bodiless:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if bodiless:
            return
        if length is not None:
            self.wfile.write(response.read())
            return
        while True:  # a stream (watch): pass each piece on as it comes
            piece = response.read1(65536)
            if not piece:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@contextmanager
def operator_proxy(cluster: Cluster, workdir: Path) -> Iterator[ApiProxy]:
    """A proxy in front of the cluster's API server, and `proxy.kubeconfig` that logs in through it as
    the Helm chart's ServiceAccount: the identity every e2e operator runs as."""
    identity = SESSION_IDENTITY.get(cluster.kubeconfig).kubeconfig
    with ApiProxy.running(identity) as proxy:
        proxy.write_kubeconfig(workdir / "operator-via-proxy.kubeconfig", identity)
        yield proxy
