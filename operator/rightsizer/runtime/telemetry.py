"""The operator's own Prometheus metrics: decisions, cost, utilisation, errors, loop latency.

prometheus_client keeps the registry, the metric types and the exposition; this module names every
metric once and remembers which label sets were used, so a deleted workload's series can be dropped.
Label values are names and numbers only (namespace, workload, pool, action, reason code): nothing
else about the workloads leaves the operator through this endpoint.
"""

from __future__ import annotations

import threading
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

# `_created` series double every counter's series for a timestamp nobody queries.
disable_created_metrics()  # type: ignore[no-untyped-call]

LabelValues = tuple[str, ...]

# Seconds; fine below 50 ms, where a workload's own decision work should stay.
RECONCILE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metric:
    """A gauge or counter with its label names; ``value`` reads one series back (for tests and
    status), ``remove_matching`` drops every series of, e.g., a deleted workload."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help: str,
        kind: Literal["gauge", "counter"],
        labels: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.labels = labels
        self._registry = registry
        self._metric: Gauge | Counter = (Gauge if kind == "gauge" else Counter)(
            name, help, labels, registry=registry
        )
        # prometheus_client names a counter's series <name>_total whether or not the name says so.
        self._sample = name if kind == "gauge" or name.endswith("_total") else f"{name}_total"
        self._seen: set[LabelValues] = set()
        self._lock = threading.Lock()

    def set(self, value: float, *label_values: str) -> None:
        child = self._child(label_values)
        if not isinstance(child, Gauge):
            raise TypeError(f"{self.name} is a counter: it only goes up")
        child.set(value)

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        self._child(label_values).inc(by)  # a counter refuses a negative increment

    def remove(self, *label_values: str) -> None:
        key = self._key(label_values)
        with self._lock:
            if key in self._seen:
                self._seen.discard(key)
                self._metric.remove(*key)

    def remove_matching(self, **match: str) -> None:
        """Forget every series whose labels include these values (e.g. a deleted workload)."""
        idx = {self.labels.index(k): v for k, v in match.items()}
        with self._lock:
            for key in [k for k in self._seen if all(k[i] == v for i, v in idx.items())]:
                self._seen.discard(key)
                self._metric.remove(*key)

    def value(self, *label_values: str) -> float | None:
        key = self._key(label_values)
        return self._registry.get_sample_value(self._sample, dict(zip(self.labels, key, strict=True)))

    def _key(self, label_values: tuple[str, ...]) -> LabelValues:
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {label_values}")
        return label_values

    def _child(self, label_values: tuple[str, ...]) -> Gauge | Counter:
        key = self._key(label_values)
        if not self.labels:
            return self._metric
        with self._lock:
            self._seen.add(key)
        return self._metric.labels(*key)


def _histogram(registry: CollectorRegistry, name: str, help: str, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(name, help, buckets=buckets, registry=registry)


class Telemetry:
    """Every metric the operator exports, created once and passed to whoever records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The process's own resident memory, CPU seconds and open file descriptors.
        ProcessCollector(registry=self.registry)
        wl = ("namespace", "workload")
        self.workload_cost_per_hour = Metric(
            self.registry,
            "rightsizer_workload_cost_per_hour",
            "Cost per hour of a GPU workload.",
            "gauge",
            (*wl, "currency"),
        )
        self.workload_cost_to_date = Metric(
            self.registry,
            "rightsizer_workload_cost_to_date",
            "Cost accrued by a GPU workload.",
            "gauge",
            (*wl, "currency"),
        )
        self.workload_gpu_utilization = Metric(
            self.registry,
            "rightsizer_workload_gpu_utilization",
            "Mean GPU utilisation of a workload's ready replicas, percent.",
            "gauge",
            wl,
        )
        self.workload_gpu_efficiency = Metric(
            self.registry,
            "rightsizer_workload_gpu_efficiency",
            "GPUs busy / GPUs requested (0-1).",
            "gauge",
            wl,
        )
        self.workload_replicas = Metric(
            self.registry,
            "rightsizer_workload_replicas",
            "Replicas of a workload's target.",
            "gauge",
            (*wl, "kind"),
        )
        self.decisions = Metric(
            self.registry,
            "rightsizer_decisions_total",
            "Decisions taken, by action and reason code.",
            "counter",
            ("action", "reason"),
        )
        self.metrics_unavailable = Metric(
            self.registry,
            "rightsizer_metrics_unavailable",
            "1 while a workload holds for lack of usable metrics.",
            "gauge",
            wl,
        )
        self.samples_rejected = Metric(
            self.registry,
            "rightsizer_metric_samples_rejected_total",
            "GPU metric values refused as not readings (DCGM blanks, out of range), by reason.",
            "counter",
            ("reason",),
        )
        self.errors = Metric(
            self.registry, "rightsizer_errors_total", "Errors by where they happened.", "counter", ("where",)
        )
        self.passes = Metric(
            self.registry, "rightsizer_reconcile_total", "Workload reconciliations.", "counter"
        )
        self.reconcile_duration = _histogram(
            self.registry,
            "rightsizer_reconcile_duration_seconds",
            "Wall-clock seconds of one workload reconciliation, API and metrics calls included.",
            RECONCILE_BUCKETS,
        )
        self.reconcile_cpu = _histogram(
            self.registry,
            "rightsizer_reconcile_cpu_seconds",
            "CPU seconds of one workload reconciliation in the operator's own code: observing, deciding "
            "and describing, without the API and metrics calls.",
            RECONCILE_BUCKETS,
        )
        self.savings_per_hour = Metric(
            self.registry,
            "rightsizer_savings_per_hour",
            "Cost per hour saved by actions taken, by kind.",
            "gauge",
            ("kind", "currency"),
        )
        self.pool_idle_cost_per_hour = Metric(
            self.registry,
            "rightsizer_pool_idle_cost_per_hour",
            "Cost per hour of a pool's unused GPUs.",
            "gauge",
            ("pool", "currency"),
        )
        self.pool_nodes = Metric(
            self.registry, "rightsizer_pool_nodes", "Nodes in a GPU node pool.", "gauge", ("pool",)
        )
        self.pool_passes = Metric(
            self.registry,
            "rightsizer_pool_passes_total",
            "Consolidation passes of a GPU node pool.",
            "counter",
            ("pool",),
        )

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    def forget_workload(self, namespace: str, workload: str) -> None:
        for m in vars(self).values():
            if isinstance(m, Metric) and "namespace" in m.labels and "workload" in m.labels:
                m.remove_matching(namespace=namespace, workload=workload)


def serve(telemetry: Telemetry, address: str, port: int) -> WSGIServer:
    """Serve /metrics on a daemon thread; returns the server (its port is real even when 0 was asked)."""
    server, _ = start_http_server(port, addr=address, registry=telemetry.registry)
    return server
