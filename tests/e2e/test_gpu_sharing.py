"""GPUs as real clusters hand them out, on the local control plane with the default settings (signal
Auto, pod labels auto): MIG slices, time-sliced GPUs shared by several pods, and a multi-GPU pod whose
GPUs differ. Each test brings its own tainted node with the resources and labels the NVIDIA device
plugin and GPU feature discovery would give it; the fake exporter reports its devices as dcgm-exporter
does, and the cluster's Prometheus scrapes them.

Negative checks wait for the operator's own decisions (rightsizer_decisions_total), never sleep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8, L4_X1, NodeShape, fake_node_manifest
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import OWNER_LABEL, TAINT_KEY, Fleet
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"


def own_node(fleet: Fleet, name: str, shape: NodeShape, extra: dict[str, str] | None = None) -> str:
    """A node only this test's pods tolerate; ``extra`` adds resources to its capacity."""
    node = fake_node_manifest(name, shape, fleet.pool("sharing"), "us-east-1a")
    node["metadata"]["labels"][OWNER_LABEL] = fleet.id
    node["spec"]["taints"] = [{"key": TAINT_KEY, "value": fleet.id, "effect": "NoSchedule"}]
    for kind in ("capacity", "allocatable"):
        node["status"][kind].update(extra or {})
    fleet.core.create_node(node)
    wait_for(lambda: fleet.ready(name), timeout=60)
    return name


def app_on(node: str, fleet: Fleet, name: str, replicas: int, resources: dict[str, str]) -> dict[str, Any]:
    app = gpu_deployment(name, replicas)
    pod = app["spec"]["template"]["spec"]
    pod["nodeSelector"] = {"kubernetes.io/hostname": node}
    pod["tolerations"] = [{"key": TAINT_KEY, "operator": "Equal", "value": fleet.id, "effect": "NoSchedule"}]
    pod["containers"][0]["resources"] = {"requests": {"cpu": "1", **resources}, "limits": resources}
    return app


def series_count(prometheus: str, query: str) -> int:
    rsp = requests.get(f"{prometheus}/api/v1/query", params={"query": f"count({query})"}, timeout=5)
    result = rsp.json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def decisions(operator: OperatorProcess, action: str, reason: str) -> float:
    prefix = f'rightsizer_decisions_total{{action="{action}",reason="{reason}"}} '
    for line in requests.get(operator.metrics_url, timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def operator(cluster: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "-f", "crds/")
    with OperatorProcess.start(cluster.kubeconfig, namespace, cluster.prometheus_url, interval=3) as proc:
        yield proc


def test_a_mig_workload_is_scaled_on_gr_engine_active_with_the_default_signal(
    cluster: Cluster, world: World, fleet: Fleet, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    node = own_node(fleet, f"{fleet.id}-mig", A100_80GB_X8, {"nvidia.com/mig-1g.10gb": "7"})
    cluster.apply(app_on(node, fleet, "chat", 2, {"nvidia.com/mig-1g.10gb": "1"}), ns)
    gpu_util.set(ns, 90, selector={"app": "chat"})
    world.wait_ready("chat", 2)
    # MIG instances report no DCGM_FI_DEV_GPU_UTIL at all: only the engine activity names them.
    mine = f'{{namespace="{ns}"}}'
    wait_for(lambda: series_count(cluster.prometheus_url, f"{GR_ENGINE_ACTIVE}{mine}") == 2, timeout=60)
    assert series_count(cluster.prometheus_url, f"DCGM_FI_DEV_GPU_UTIL{mine}") == 0

    cluster.apply(gpu_workload("chat", "chat"), ns)
    # 2 slices at 90% against a 60% target: 3 slices.
    wait_for(lambda: world.replicas("chat") == 3, timeout=90, describe=lambda: world.describe("chat"))
    utilization = world.workload("chat")["status"]["utilization"]
    assert utilization["signal"] == GR_ENGINE_ACTIVE
    assert utilization["sharedGpu"] is False


def test_a_workload_sharing_a_gpu_is_never_scaled_down_on_the_devices_number(
    cluster: Cluster, world: World, fleet: Fleet, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    # One L4 time-sliced four ways, as the device plugin's sharing config advertises it.
    sliced = replace(L4_X1, extra_labels={"nvidia.com/gpu.replicas": "4"})
    node = own_node(fleet, f"{fleet.id}-sliced", sliced, {"nvidia.com/gpu": "4"})
    for app, replicas in (("chat", 2), ("batch", 1)):
        cluster.apply(app_on(node, fleet, app, replicas, {"nvidia.com/gpu": "1"}), ns)
        gpu_util.set(ns, 5, selector={"app": app})
        world.wait_ready(app, replicas)
    # Every sharer reads the device's 15%: on its own, 2 x 15% against 60% would mean 1 replica.
    at_15 = f'abs(DCGM_FI_DEV_GPU_UTIL{{namespace="{ns}"}} - 15) < 1'
    wait_for(lambda: series_count(cluster.prometheus_url, at_15) == 3, timeout=60)

    wake = {"query": "vector(0)", "threshold": 50, "replicas": 1, "cooldown": "10s"}
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    cluster.apply(gpu_workload("chat", "chat", minReplicas=0, wakeUp=wake, behavior=behavior), ns)
    wait_for(lambda: decisions(operator, "Hold", "SharedGpu") >= 5, timeout=90, describe=world.describe)
    assert world.replicas("chat") == 2
    status = world.workload("chat")["status"]
    assert status["utilization"]["sharedGpu"] is True
    assert "SharedGpu" in status["lastDecision"]["reason"]


def test_an_eight_gpu_training_pod_with_one_busy_gpu_is_never_suspended(
    cluster: Cluster, world: World, fleet: Fleet, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    node = own_node(fleet, f"{fleet.id}-a100", A100_80GB_X8)
    cluster.apply(app_on(node, fleet, "train", 1, {"nvidia.com/gpu": "8"}), ns)
    # One GPU at 30%, seven idle: the pod's mean is 3.75%, under the 5% idle threshold.
    gpu_util.per_gpu(ns, [30, 0, 0, 0, 0, 0, 0, 0], selector={"app": "train"})
    world.wait_ready("train", 1)
    busy = f'DCGM_FI_DEV_GPU_UTIL{{namespace="{ns}"}} > 29'
    wait_for(lambda: series_count(cluster.prometheus_url, busy) == 1, timeout=60)

    idle = {"thresholdPercent": 5, "idleFor": "10s", "action": "Suspend"}
    training = gpu_workload("train", "train", workloadType="Training", maxReplicas=None, idlePolicy=idle)
    cluster.apply(training, ns)
    # Three times the idle duration (10 s at 3 s per pass): still running.
    wait_for(lambda: decisions(operator, "NoChange", "WithinTolerance") >= 10, timeout=90)
    assert world.replicas("train") == 1
    assert "busy" in world.workload("train")["status"]["lastDecision"]["reason"]
