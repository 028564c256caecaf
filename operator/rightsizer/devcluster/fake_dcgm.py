"""A fake NVIDIA dcgm-exporter for clusters whose GPUs are fake (kwok nodes, kind, demos).

It serves `/metrics` in the text format dcgm-exporter writes (same HELP/TYPE lines, label names and
order, value formatting), for every GPU of every node with GPU capacity (`nvidia.com/gpu`, its
time-sliced replicas, `nvidia.com/gpu.shared`, MIG instances `nvidia.com/mig-<profile>`), attributing
devices to the Running pods placed there, with utilisation driven by scenario rules (see
scenario.py). `/nodes/<node>/metrics` serves one node's GPUs, as a per-node DaemonSet pod would;
`/health` says whether the cluster has been read recently.

Either metrics path takes `?labels=new|old|1.x` to write one exporter release's labels and names,
`?virtual-gpus=on|off` to override --virtual-gpus (dcgm-exporter's --kubernetes-virtual-gpus: every
pod sharing a time-sliced GPU gets a series with the device's value; off, only one of them is
labelled), and `?fault=` to misbehave the way broken exporters do, so tests can point
an operator at a bad endpoint beside good ones: `garbled` adds a line that is not valid exposition
text (a field printed as `N/A`), `explode` adds `series` (default 5000) extra series of one metric
told apart by a high-cardinality label, as a misconfigured exporter does; `blanks` writes DCGM's
"not supported" values for framebuffer memory and power on every GPU. After the DCGM series come
the app gauges scenario rules give pods (`appMetrics`, see scenario.py), one series per pod.

Run: python -m rightsizer.devcluster.fake_dcgm --kubeconfig K --listen 127.0.0.1:9400
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rightsizer.devcluster.dcgm_text import (
    FAULTS,
    LABEL_FLAVOURS,
    LabelNames,
    render,
    render_app_metrics,
    with_fault,
)
from rightsizer.devcluster.exporter_state import FakeDcgmExporter, kube_lister
from rightsizer.devcluster.scenario import DEFAULT_DRIVER_VERSION
from rightsizer.devcluster.scenario_rules import ScenarioError

log = logging.getLogger("rightsizer.fake_dcgm")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_EXPLOSION = 5000
MAX_EXPLOSION = 1_000_000


# -- HTTP ------------------------------------------------------------------------------------------


_NODE_PATH = re.compile(r"/nodes/([^/]+)/metrics")
_SWITCH = {"on": True, "off": False}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        exporter: FakeDcgmExporter,
        names: LabelNames,
        stale_after: timedelta,
        family: socket.AddressFamily = socket.AF_INET,
        *,
        virtual_gpus: bool = True,
    ) -> None:
        self.address_family = family
        self.exporter = exporter
        self.names = names
        self.stale_after = stale_after
        self.virtual_gpus = virtual_gpus
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
        virtual = (query.get("virtual-gpus") or [""])[0]
        if virtual and virtual not in _SWITCH:
            self._reply(400, "virtual-gpus= takes on or off\n")
            return
        # Per request, so one exporter serves a scrape job of each exporter release and set-up.
        names = LABEL_FLAVOURS[flavour] if flavour else self.server.names
        virtual_gpus = _SWITCH[virtual] if virtual else self.server.virtual_gpus
        readings = view.readings(now, node, exporter.driver_version, virtual_gpus)
        body = render(readings, names)
        if fault:
            body = with_fault(body, fault, readings, names, int(count))
        # The app gauges stand in for the pods' own servers: an exporter's fault does not touch them.
        body += render_app_metrics(view.app_readings(node), names)
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
    parser.add_argument(
        "--virtual-gpus",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="as dcgm-exporter --kubernetes-virtual-gpus: every pod sharing a time-sliced GPU gets a "
        "series with the device's value (--no-virtual-gpus: one pod per GPU is labelled)",
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
        server = _Server((host, port), exporter, names, stale_after, family, virtual_gpus=args.virtual_gpus)
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
    log.info(
        "serving dcgm-exporter metrics on http://%s:%d/metrics (labels: %s, virtual GPUs: %s)",
        host,
        port,
        args.labels,
        "on" if args.virtual_gpus else "off",
    )
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
