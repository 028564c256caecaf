"""The operator's own Prometheus metrics: decisions, cost, utilisation, errors, loop latency.

A small registry and the text exposition format, served on /metrics by a daemon thread. Label values
are names and numbers only (namespace, workload, pool, action, reason code): nothing else about
the workloads leaves the operator through this endpoint.
"""

from __future__ import annotations

import bisect
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


# Seconds; fine below 50 ms, where a workload's own decision work should stay.
RECONCILE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass
class Histogram:
    """An unlabelled Prometheus histogram: cumulative `_bucket{le=...}`, `_sum` and `_count`."""

    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last is +Inf
    total: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"{self.name}: buckets must be increasing, got {self.buckets}")
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)  # le: a value equal to a bound falls in it
        with self.lock:
            self.counts[index] += 1
            self.total += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self.lock:
            counts, total = list(self.counts), self.total
        cumulative = 0
        for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else _number(bound)
            lines.append(f'{self.name}_bucket{{le="{le}"}} {cumulative}')
        lines.append(f"{self.name}_sum {_number(total)}")
        lines.append(f"{self.name}_count {cumulative}")
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
        self.samples_rejected = Metric(
            "rightsizer_metric_samples_rejected_total",
            "GPU metric values refused as not readings (DCGM blanks, out of range), by reason.",
            "counter",
            ("reason",),
        )
        self.errors = Metric(
            "rightsizer_errors_total", "Errors by where they happened.", "counter", ("where",)
        )
        self.pass_seconds = Metric(
            "rightsizer_reconcile_seconds_sum", "Total seconds spent reconciling workloads.", "counter"
        )
        self.passes = Metric("rightsizer_reconcile_total", "Workload reconciliations.", "counter")
        self.reconcile_duration = Histogram(
            "rightsizer_reconcile_duration_seconds",
            "Wall-clock seconds of one workload reconciliation, API and metrics calls included.",
            RECONCILE_BUCKETS,
        )
        self.reconcile_cpu = Histogram(
            "rightsizer_reconcile_cpu_seconds",
            "CPU seconds of one workload reconciliation in the operator's own code: observing, deciding "
            "and describing, without the API and metrics calls.",
            RECONCILE_BUCKETS,
        )
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
        self.pool_passes = Metric(
            "rightsizer_pool_passes_total", "Consolidation passes of a GPU node pool.", "counter", ("pool",)
        )

    def all(self) -> list[Metric | Histogram]:
        return [m for m in vars(self).values() if isinstance(m, Metric | Histogram)]

    def render(self) -> str:
        return "\n".join(line for m in self.all() for line in m.render()) + "\n"

    def forget_workload(self, namespace: str, workload: str) -> None:
        for m in self.all():
            if isinstance(m, Metric) and "namespace" in m.labels and "workload" in m.labels:
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
