"""The operator decides on GPU series in each shape a real Prometheus stores them, with its default
settings (pod labels auto, signal Auto): a real Prometheus scrapes the fake exporter with the job
the real prometheus-operator generates for the exporter's ServiceMonitor, and `rightsizer metrics
inspect` on that Prometheus shows the numbers the operator decided on.

- honorLabels false (the exporter chart's default): the pods are in exported_namespace/exported_pod,
  namespace/pod name the exporter's own pod;
- honorLabels true: the exporter's own labels win, unallocated GPUs carry the exporter pod's;
- an old exporter: 1.x names (dcgm_gpu_utilization...), pod_name/pod_namespace and lower-case uuid.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from rightsizer.cli.main import main
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess, PrivatePrometheus, prometheus_sees
from tests.support.prometheus_operator import PrometheusOperator
from tests.support.servicemonitor_prometheus import EXPORTER_NAMESPACE, servicemonitor_prometheus
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

UTIL = 90
SHAPES = [
    pytest.param(False, None, "exported", id="servicemonitor-honor-labels-false"),
    pytest.param(True, None, "new", id="servicemonitor-honor-labels-true"),
    pytest.param(False, "1.x", "old", id="old-exporter-1.x-names"),
]


def decided(world: World) -> dict[str, Any] | None:
    status = world.workload("chat").get("status") or {}
    metrics: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "MetricsAvailable"), {}
    )
    if metrics.get("status") != "True" or (status.get("replicas") or {}).get("desired") != 3:
        return None
    return status


@pytest.mark.parametrize(("honor_labels", "release", "shape"), SHAPES)
def test_the_operator_reads_each_prometheus_shape_and_inspect_shows_what_it_read(  # noqa: PLR0917 - fixtures and params
    cluster: Cluster,
    world: World,
    gpu_util: GpuUtilization,
    prometheus_operator: PrometheusOperator,
    capsys: pytest.CaptureFixture[str],
    honor_labels: bool,
    release: str | None,
    shape: str,
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, UTIL)
    with (
        servicemonitor_prometheus(
            cluster.dcgm_url, honor_labels, release, operator=prometheus_operator
        ) as prometheus,
        OperatorProcess.start(cluster.kubeconfig, ns, prometheus, interval=3) as operator,
    ):
        # Recommend: 2 replicas at 90% against a 60% target want 3, decided on these series only.
        cluster.apply(gpu_workload("chat", "chat", mode="Recommend"), ns)
        status: dict[str, Any] = {}

        def read() -> bool:
            status.update(decided(world) or {})
            return bool(status)

        wait_for(read, timeout=60, describe=lambda: f"{world.describe('chat')}\n{operator.log()[-3000:]}")
        utilization = status["utilization"]
        assert utilization["aggregate"] == pytest.approx(UTIL, abs=1)
        assert utilization["signal"] == "DCGM_FI_PROF_GR_ENGINE_ACTIVE"  # Auto, where the GPU reports it

        assert main(["metrics", "inspect", "--prometheus", prometheus, "--output", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        mine = {key: pod for key, pod in report["pods"].items() if key.startswith(f"{ns}/")}
        assert sorted(mine) == sorted(f"{ns}/{r['pod']}" for r in utilization["perReplica"])
        for replica in utilization["perReplica"]:
            pod = mine[f"{ns}/{replica['pod']}"]
            assert pod["utilization"] == pytest.approx(replica["percent"], abs=1)
            assert (pod["gpus"], pod["signal"], pod["shared"]) == (1, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", False)
        assert shape in report["shape"].split("+")
        if not honor_labels:
            # The exporter's own pod, named by every series' plain labels, holds no GPU of its own.
            assert not any(key.startswith(f"{EXPORTER_NAMESPACE}/") for key in report["pods"])


def sentinel_rejections(operator: OperatorProcess) -> float:
    prefix = 'rightsizer_metric_samples_rejected_total{reason="sentinel"} '
    for line in requests.get(operator.metrics_url, timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_dcgm_blanks_for_power_and_memory_are_refused_and_never_priced(
    cluster: Cluster, world: World, gpu_util: GpuUtilization
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 60)
    # An exporter whose GPUs do not support power and memory readings: DCGM writes its blanks there.
    exporter = urlsplit(cluster.dcgm_url)
    job = {
        "job_name": "dcgm",
        "params": {"fault": ["blanks"]},
        "static_configs": [{"targets": [exporter.netloc]}],
    }
    config = {"global": {"scrape_interval": "2s"}, "scrape_configs": [job]}
    with (
        PrivatePrometheus.start(config) as prometheus,
        OperatorProcess.start(cluster.kubeconfig, ns, prometheus.url, interval=3) as operator,
    ):
        wait_for(lambda: prometheus_sees(prometheus.url, ns, "chat", 2), timeout=60)
        pricing = {"pricePerGpuHour": 2, "currency": "EUR"}
        cluster.apply(gpu_workload("chat", "chat", mode="Recommend", pricing=pricing), ns)
        cost: dict[str, Any] = {}

        def priced() -> bool:
            cost.update((world.workload("chat").get("status") or {}).get("cost") or {})
            return bool(cost)

        wait_for(priced, timeout=60, describe=lambda: world.describe("chat"))
        # Two GPUs at 2/h and their rated energy: taken as a reading, a 2^47 W blank costs ~1e12/h.
        assert 4 <= cost["perHour"] < 5
        assert sentinel_rejections(operator) > 0
        assert world.condition("chat", "MetricsAvailable")["status"] == "True"  # utilisation is fine
