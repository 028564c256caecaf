"""A real Prometheus scraping the cluster's fake dcgm-exporter the way a ServiceMonitor makes it.

The scrape job follows, field by field, what prometheus-operator generates for the dcgm-exporter
chart's ServiceMonitor (job ``serviceMonitor/<ns>/<name>/0``, ``honor_labels`` as the ServiceMonitor
says, the relabelling that turns the endpoint's discovery labels into ``namespace``, ``service``,
``pod``, ``container``, ``job`` and ``endpoint``). Only discovery differs: the exporter listens on
loopback, which EndpointSlices may not point at, so the target is static and carries the
``__meta_kubernetes_*`` labels endpoint discovery would give it. The relabelling then runs as in a
real cluster, and Prometheus renames the series' own pod labels exactly as it does there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.support.cluster import wait_for
from tests.support.operator_process import PrivatePrometheus

EXPORTER_NAMESPACE = "gpu-operator"
EXPORTER_SERVICE = "nvidia-dcgm-exporter"
EXPORTER_POD = "nvidia-dcgm-exporter-x7k2p"
EXPORTER_CONTAINER = "nvidia-dcgm-exporter"
PORT_NAME = "gpu-metrics"


def _relabelling() -> list[dict[str, Any]]:
    target = [
        "__meta_kubernetes_endpoint_address_target_kind",
        "__meta_kubernetes_endpoint_address_target_name",
    ]
    return [
        {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": PORT_NAME},
        {"source_labels": target, "separator": ";", "regex": "Node;(.*)", "replacement": "${1}",
         "target_label": "node"},
        {"source_labels": target, "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}",
         "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
        {"target_label": "endpoint", "replacement": PORT_NAME},
    ]  # fmt: skip


def scrape_config(exporter_url: str, honor_labels: bool, release: str | None = None) -> dict[str, Any]:
    """The Prometheus configuration; ``release`` asks the fake exporter for old labels or 1.x names."""
    url = urlsplit(exporter_url)
    discovered = {
        "__meta_kubernetes_endpoint_port_name": PORT_NAME,
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": EXPORTER_POD,
        "__meta_kubernetes_namespace": EXPORTER_NAMESPACE,
        "__meta_kubernetes_service_name": EXPORTER_SERVICE,
        "__meta_kubernetes_pod_name": EXPORTER_POD,
        "__meta_kubernetes_pod_container_name": EXPORTER_CONTAINER,
        "__meta_kubernetes_pod_phase": "Running",
    }
    job: dict[str, Any] = {
        "job_name": f"serviceMonitor/{EXPORTER_NAMESPACE}/{EXPORTER_SERVICE}/0",
        "honor_labels": honor_labels,
        "static_configs": [{"targets": [url.netloc], "labels": discovered}],
        "scrape_interval": "2s",
        "metrics_path": url.path or "/metrics",
        "relabel_configs": _relabelling(),
    }
    if release:
        job["params"] = {"labels": [release]}
    return {"global": {"scrape_interval": "2s", "evaluation_interval": "5s"}, "scrape_configs": [job]}


@contextmanager
def servicemonitor_prometheus(
    exporter_url: str, honor_labels: bool, release: str | None = None
) -> Iterator[str]:
    """A running Prometheus with that one job; yields its URL once it holds GPU series."""
    with PrivatePrometheus.start(scrape_config(exporter_url, honor_labels, release)) as prometheus:
        query = 'count({__name__=~"DCGM_FI_DEV_GPU_UTIL|dcgm_gpu_utilization"})'
        wait_for(
            lambda: bool(
                requests.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()[
                    "data"
                ]["result"]
            ),
            timeout=60,
        )
        yield prometheus.url
