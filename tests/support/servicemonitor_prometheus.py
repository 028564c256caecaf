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

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def servicemonitor_prometheus(
    exporter_url: str, honor_labels: bool, release: str | None = None
) -> Iterator[str]:
    """A running Prometheus with that one job; yields its URL once it holds GPU series."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    workdir = Path(tempfile.mkdtemp(prefix="rightsizer-sm-prometheus-"))
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(exporter_url, honor_labels, release), sort_keys=False))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_series(url, process, workdir)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_series(url: str, process: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 60
    query = 'count({__name__=~"DCGM_FI_DEV_GPU_UTIL|dcgm_gpu_utilization"})'
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        try:
            answer = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
            if answer["data"]["result"]:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus at {url} held no GPU series after 60s")
