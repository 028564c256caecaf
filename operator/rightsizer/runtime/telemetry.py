"""The operator's own Prometheus metrics: decisions, cost, utilisation, errors, loop latency.

A small registry and the text exposition format, served on /metrics by a daemon thread. Label values
are names and numbers only (namespace, workload, pool, action, reason code): nothing else about
the workloads leaves the operator through this endpoint.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Metric:
    name: str
    help: str
    kind: str  # "gauge" | "counter"
    labels: tuple[str, ...] = ()
    values: dict[LabelValues, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, value: float, *label_values: str) -> None:
        with self.lock:
            self.values[self._key(label_values)] = value

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        with self.lock:
            key = self._key(label_values)
            self.values[key] = self.values.get(key, 0.0) + by

    def remove(self, *label_values: str) -> None:
        with self.lock:
            self.values.pop(self._key(label_values), None)

    def remove_matching(self, **match: str) -> None:
        """Forget every series whose labels include these values (e.g. a deleted workload)."""
        idx = {self.labels.index(k): v for k, v in match.items()}
        with self.lock:
            for key in [k for k in self.values if all(k[i] == v for i, v in idx.items())]:
                del self.values[key]

    def _key(self, label_values: Iterable[str]) -> LabelValues:
        key = tuple(label_values)
        if len(key) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {key}")
        return key

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self.lock:
            items = sorted(self.values.items())
        for key, value in items:
            if self.labels:
                pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(self.labels, key, strict=True))
                lines.append(f"{self.name}{{{pairs}}} {_number(value)}")
            else:
                lines.append(f"{self.name} {_number(value)}")
        return lines


class Telemetry:
    """Every metric the operator exports, created once and passed to whoever records."""

    def __init__(self) -> None:
        wl = ("namespace", "workload")
        self.workload_cost_per_hour = Metric(
            "rightsizer_workload_cost_per_hour",
            "Cost per hour of a GPU workload.",
            "gauge",
            (*wl, "currency"),
        )
        self.workload_cost_to_date = Metric(
            "rightsizer_workload_cost_to_date", "Cost accrued by a GPU workload.", "gauge", (*wl, "currency")
        )
        self.workload_gpu_utilization = Metric(
            "rightsizer_workload_gpu_utilization",
            "Mean GPU utilisation of a workload's ready replicas, percent.",
            "gauge",
            wl,
        )
        self.workload_gpu_efficiency = Metric(
            "rightsizer_workload_gpu_efficiency", "GPUs busy / GPUs requested (0-1).", "gauge", wl
        )
        self.workload_replicas = Metric(
            "rightsizer_workload_replicas", "Replicas of a workload's target.", "gauge", (*wl, "kind")
        )
        self.decisions = Metric(
            "rightsizer_decisions_total",
            "Decisions taken, by action and reason code.",
            "counter",
            ("action", "reason"),
        )
        self.metrics_unavailable = Metric(
            "rightsizer_metrics_unavailable",
            "1 while a workload holds for lack of usable metrics.",
            "gauge",
            wl,
        )
        self.errors = Metric(
            "rightsizer_errors_total", "Errors by where they happened.", "counter", ("where",)
        )
        self.pass_seconds = Metric(
            "rightsizer_reconcile_seconds_sum", "Total seconds spent reconciling workloads.", "counter"
        )
        self.passes = Metric("rightsizer_reconcile_total", "Workload reconciliations.", "counter")
        self.savings_per_hour = Metric(
            "rightsizer_savings_per_hour",
            "Cost per hour saved by actions taken, by kind.",
            "gauge",
            ("kind", "currency"),
        )
        self.pool_idle_cost_per_hour = Metric(
            "rightsizer_pool_idle_cost_per_hour",
            "Cost per hour of a pool's unused GPUs.",
            "gauge",
            ("pool", "currency"),
        )
        self.pool_nodes = Metric("rightsizer_pool_nodes", "Nodes in a GPU node pool.", "gauge", ("pool",))

    def all(self) -> list[Metric]:
        return [m for m in vars(self).values() if isinstance(m, Metric)]

    def render(self) -> str:
        return "\n".join(line for m in self.all() for line in m.render()) + "\n"

    def forget_workload(self, namespace: str, workload: str) -> None:
        for m in self.all():
            if "namespace" in m.labels and "workload" in m.labels:
                m.remove_matching(namespace=namespace, workload=workload)


def serve(telemetry: Telemetry, address: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics on a daemon thread; returns the server (its port is real even when 0 was asked)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = telemetry.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(
            self, format: str, *args: object
        ) -> None:  # scrapes every few seconds: keep logs quiet
            return

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
