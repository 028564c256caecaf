"""A fake NVIDIA dcgm-exporter for clusters whose GPUs are fake (kwok nodes, kind, demos).

It serves `/metrics` in the text format dcgm-exporter writes (same HELP/TYPE lines, label names and
order, value formatting), for every GPU of every node with `nvidia.com/gpu` capacity, attributing
GPUs to the Running pods placed there, with utilisation driven by scenario rules (see scenario.py).
`/nodes/<node>/metrics` serves one node's GPUs, as a per-node DaemonSet pod would; `/health` says
whether the cluster has been read recently.

Either metrics path takes `?labels=new|old|1.x` to write one exporter release's labels and names, and
`?fault=` to misbehave the way broken exporters do, so tests can point
an operator at a bad endpoint beside good ones: `garbled` adds a line that is not valid exposition
text (a field printed as `N/A`), `explode` adds `series` (default 5000) extra series of one metric
told apart by a high-cardinality label, as a misconfigured exporter does.

Run: python -m rightsizer.devcluster.fake_dcgm --kubeconfig K --listen 127.0.0.1:9400
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rightsizer.devcluster.dcgm_text import FAULTS, LABEL_FLAVOURS, LabelNames, render, with_fault
from rightsizer.devcluster.scenario import (
    DEFAULT_DRIVER_VERSION,
    SCENARIO_KEY,
    SCENARIO_LABEL,
    ActiveRule,
    Assignment,
    GpuNode,
    GpuPod,
    GpuReading,
    Rule,
    ScenarioError,
    assign_gpus,
    gpu_readings,
    load_scenario,
    nodes_from_api,
    pods_from_api,
)

log = logging.getLogger("rightsizer.fake_dcgm")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_EXPLOSION = 5000
MAX_EXPLOSION = 1_000_000


# -- keeping a view of the cluster -------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterObjects:
    """Raw JSON items as the API server lists them."""

    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    configmaps: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[GpuNode, ...]
    pods: Mapping[str, GpuPod]
    assignment: Assignment
    rules: tuple[ActiveRule, ...]
    read_at: datetime

    def readings(
        self, now: datetime, node: str | None = None, driver: str = DEFAULT_DRIVER_VERSION
    ) -> list[GpuReading]:
        nodes = [n for n in self.nodes if node is None or n.name == node]
        return gpu_readings(nodes, self.pods, self.assignment, self.rules, now, default_driver=driver)


@dataclass
class _FileRules:
    path: Path
    mtime_ns: int = -1
    rules: tuple[Rule, ...] = ()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FakeDcgmExporter:
    """Turns periodic cluster listings into a ClusterView; stateful only where the real world is
    (GPU assignments survive while pods live, rule start times are when a rule was first seen)."""

    def __init__(
        self,
        lister: Callable[[], ClusterObjects],
        scenario_file: Path | None = None,
        clock: Callable[[], datetime] = _utcnow,
        driver_version: str = DEFAULT_DRIVER_VERSION,
    ) -> None:
        self.lister = lister
        self.clock = clock
        self.driver_version = driver_version
        self._view: ClusterView | None = None
        self._first_seen: dict[tuple[str, str], datetime] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._file: _FileRules | None = None
        if scenario_file is not None:
            self._file = _FileRules(scenario_file)
            self._reload_file(strict=True)

    def view(self) -> ClusterView | None:
        return self._view

    def refresh(self) -> ClusterView:
        objects = self.lister()
        now = self.clock()
        with self._lock:
            nodes = nodes_from_api(objects.nodes)
            pods, warnings = pods_from_api(objects.pods)
            for warning in warnings:
                self._warn_once(warning, warning)
            previous = self._view.assignment if self._view else {}
            assignment = assign_gpus(nodes, pods, previous)
            self._reload_file(strict=False)
            rules = self._active_rules(objects.configmaps, now)
            self._view = ClusterView(
                nodes=tuple(sorted(nodes, key=lambda n: n.name)),
                pods={p.uid: p for p in pods},
                assignment=assignment,
                rules=rules,
                read_at=now,
            )
            return self._view

    def _active_rules(self, configmaps: Sequence[Mapping[str, Any]], now: datetime) -> tuple[ActiveRule, ...]:
        bound: list[tuple[str, str, Rule]] = []  # (origin, namespace, rule)
        if self._file is not None:
            bound += [(f"file:{self._file.path}", r.namespace or "", r) for r in self._file.rules]
        for cm in sorted(
            configmaps, key=lambda c: (c["metadata"].get("namespace", ""), c["metadata"]["name"])
        ):
            meta = cm["metadata"]
            namespace = meta.get("namespace", "")
            source = f"ConfigMap {namespace}/{meta['name']}"
            text = (cm.get("data") or {}).get(SCENARIO_KEY, "")
            try:
                scenario = load_scenario(text, source, namespace=namespace)
            except ScenarioError as exc:
                self._warn_once(f"{meta.get('uid')}@{meta.get('resourceVersion')}", str(exc))
                continue
            bound += [(f"cm:{meta.get('uid', source)}", namespace, r) for r in scenario.rules]
        active: list[ActiveRule] = []
        seen: dict[tuple[str, str], datetime] = {}
        for index, (origin, namespace, rule) in enumerate(bound):
            key = (f"{origin}#{index}", rule.identity())
            first = self._first_seen.get(key, now)
            seen[key] = first
            active.append(ActiveRule(namespace, rule, rule.start or first))
        # A rule that disappears and comes back starts again.
        self._first_seen = seen
        return tuple(active)

    def _reload_file(self, strict: bool) -> None:
        state = self._file
        if state is None:
            return
        try:
            mtime = state.path.stat().st_mtime_ns
            if mtime == state.mtime_ns:
                return
            state.rules = load_scenario(state.path.read_text(), str(state.path)).rules
            state.mtime_ns = mtime
            log.info("scenario file %s: %d rule(s)", state.path, len(state.rules))
        except (OSError, ScenarioError) as exc:
            if strict:
                raise
            self._warn_once(f"file@{state.path}", f"keeping the previous rules: {exc}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def kube_lister(api_client: Any, timeout_seconds: float = 10.0) -> Callable[[], ClusterObjects]:
    """Lists nodes, Running pods and scenario ConfigMaps as raw JSON (no model objects: cheap)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def items(response: Any) -> list[Mapping[str, Any]]:
        return list(json.loads(response.data).get("items") or [])

    def list_all() -> ClusterObjects:
        opts: dict[str, Any] = {"_preload_content": False, "_request_timeout": timeout_seconds}
        return ClusterObjects(
            nodes=items(core.list_node(**opts)),
            pods=items(core.list_pod_for_all_namespaces(field_selector="status.phase=Running", **opts)),
            configmaps=items(
                core.list_config_map_for_all_namespaces(label_selector=f"{SCENARIO_LABEL}=true", **opts)
            ),
        )

    return list_all


# -- HTTP ------------------------------------------------------------------------------------------


_NODE_PATH = re.compile(r"/nodes/([^/]+)/metrics")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        exporter: FakeDcgmExporter,
        names: LabelNames,
        stale_after: timedelta,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.address_family = family
        self.exporter = exporter
        self.names = names
        self.stale_after = stale_after
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fake-dcgm-exporter"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        exporter = self.server.exporter
        view = exporter.view()
        now = exporter.clock()
        if path == "/health":
            if view is None:
                self._reply(503, "cluster not read yet\n")
            elif now - view.read_at > self.server.stale_after:
                self._reply(503, f"cluster last read at {view.read_at.isoformat()}\n")
            else:
                self._reply(200, "OK\n")
            return
        node_match = _NODE_PATH.fullmatch(path)
        if path != "/metrics" and node_match is None:
            self._reply(404, "not found: try /metrics, /nodes/<node>/metrics or /health\n")
            return
        if view is None:
            self._reply(503, "cluster not read yet\n")
            return
        node = node_match.group(1) if node_match else None
        if node is not None and node not in {n.name for n in view.nodes}:
            self._reply(404, f"no GPU node named {node!r}\n")
            return
        query = parse_qs(url.query)
        fault = (query.get("fault") or [""])[0]
        count = (query.get("series") or [str(DEFAULT_EXPLOSION)])[0]
        if fault and (fault not in FAULTS or not count.isdigit() or int(count) > MAX_EXPLOSION):
            self._reply(400, f"fault= takes {' or '.join(FAULTS)}; series= a count up to {MAX_EXPLOSION}\n")
            return
        flavour = (query.get("labels") or [""])[0]
        if flavour and flavour not in LABEL_FLAVOURS:
            self._reply(400, f"labels= takes {' or '.join(sorted(LABEL_FLAVOURS))}\n")
            return
        # Per request, so one exporter serves a scrape job of each exporter release.
        names = LABEL_FLAVOURS[flavour] if flavour else self.server.names
        readings = view.readings(now, node, exporter.driver_version)
        body = render(readings, names)
        if fault:
            body = with_fault(body, fault, readings, names, int(count))
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


# -- command line ----------------------------------------------------------------------------------


class UsageError(Exception):
    pass


def parse_listen(text: str) -> tuple[str, int, socket.AddressFamily]:
    """`127.0.0.1:9400` or `[::1]:9400`; only loopback addresses (this is dev tooling, never exposed)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9400")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise UsageError(f"--listen {text!r}: {host!r} is not an IP address") from exc
    if not address.is_loopback:
        raise UsageError(
            f"--listen {text!r}: the fake exporter only binds loopback addresses such as 127.0.0.1"
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return host, int(port_text), family


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the cluster whose GPUs to fake")
    parser.add_argument("--listen", default="127.0.0.1:9400", help="loopback HOST:PORT (default %(default)s)")
    parser.add_argument(
        "--labels",
        choices=sorted(LABEL_FLAVOURS),
        default="new",
        help="pod label names: new = namespace/pod/container, old = pod_namespace/pod_name/container_name",
    )
    parser.add_argument(
        "--hostname-label",
        choices=("Hostname", "hostname"),
        default=None,
        help="node label name (default Hostname; dcgm-exporter releases from 2026 write hostname)",
    )
    parser.add_argument("--scenario", type=Path, help="YAML rules file (each rule names its namespace)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between cluster reads")
    parser.add_argument(
        "--driver-version", default=DEFAULT_DRIVER_VERSION, help="DCGM_FI_DRIVER_VERSION label"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port, family = parse_listen(args.listen)
        if args.interval <= 0:
            raise UsageError("--interval must be > 0 seconds")
        if not Path(args.kubeconfig).is_file():
            raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file (is the cluster up?)")
        names = LABEL_FLAVOURS[args.labels]
        if args.hostname_label:
            names = dataclasses.replace(names, hostname=args.hostname_label)
        api_client = _api_client(args.kubeconfig)
        exporter = FakeDcgmExporter(
            kube_lister(api_client), scenario_file=args.scenario, driver_version=args.driver_version
        )
    except (UsageError, ScenarioError, OSError) as exc:
        print(f"fake-dcgm-exporter: {exc}", file=sys.stderr)
        return 2

    stale_after = timedelta(seconds=max(30.0, 10 * args.interval))
    try:
        server = _Server((host, port), exporter, names, stale_after, family)
    except OSError as exc:
        print(
            f"fake-dcgm-exporter: cannot listen on {args.listen}: {exc.strerror or exc}. "
            "Stop whatever holds the port (e.g. an exporter left running) or pass another --listen.",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reader = threading.Thread(target=_keep_reading, args=(exporter, args.interval, stop), daemon=True)
    reader.start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    log.info("serving dcgm-exporter metrics on http://%s:%d/metrics (labels: %s)", host, port, args.labels)
    stop.wait()
    log.info("stopping")
    server.shutdown()
    server.server_close()
    return 0


def _api_client(kubeconfig: str) -> Any:
    from kubernetes import config

    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except Exception as exc:  # the loader raises ConfigException, TypeError, KeyError... on bad files
        raise UsageError(
            f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({exc.__class__.__name__}: {exc})"
        ) from exc


def _keep_reading(exporter: FakeDcgmExporter, interval: float, stop: threading.Event) -> None:
    failing = False
    while not stop.is_set():
        try:
            view = exporter.refresh()
            if failing:
                log.info("cluster readable again")
            failing = False
            log.debug("%d GPU node(s), %d GPU pod(s)", len(view.nodes), len(view.pods))
        except Exception as exc:  # any API failure: keep serving the last view, say so once per outage
            if not failing:
                log.warning("cannot read the cluster (%s); serving the last view, retrying", exc)
            failing = True
        stop.wait(interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-dcgm-exporter", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
