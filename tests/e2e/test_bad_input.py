"""Bad GPUWorkloads are reported in status with a clear condition while every other workload is served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator(cluster: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "-f", "crds/")
    with OperatorProcess.start(cluster.kubeconfig, namespace, cluster.prometheus_url, interval=3) as proc:
        yield proc


def condition(world: World, name: str, kind: str) -> dict[str, Any]:
    for cond in (world.workload(name).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


BAD: list[tuple[str, dict[str, Any], str, str, str]] = [
    # name, spec overrides, condition, status, reason
    ("missing-target", {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nope"}},
     "Ready", "False", "TargetNotFound"),
    ("no-scale", {"targetRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "kube-root-ca.crt"}},
     "Ready", "False", "TargetNotScalable"),
    ("unknown-kind", {"targetRef": {"apiVersion": "example.com/v1", "kind": "Nope", "name": "x"}},
     "Ready", "False", "TargetNotScalable"),
    ("bad-template", {"metric": {"query": "avg by (pod) (DCGM_FI_DEV_GPU_UTIL{pod=~\"{{podz}}\"})"}},
     "MetricsAvailable", "False", "InvalidMetrics"),
    ("duplicate", {}, "Conflict", "True", "ConflictingAutoscaler"),
]  # fmt: skip


def test_bad_workloads_get_clear_conditions_and_the_good_one_is_still_served(
    world: World, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    world.cluster.apply(gpu_workload("good", "chat", maxReplicas=3), ns)
    wait_for(lambda: world.replicas("chat") == 3, timeout=30, describe=lambda: world.describe("good"))
    for name, overrides, *_ in BAD:
        world.cluster.apply(gpu_workload(name, "chat", **overrides), ns)
    for name, _, kind, status, reason in BAD:
        wait_for(
            lambda name=name, kind=kind, status=status: condition(world, name, kind).get("status") == status,
            timeout=45,
            describe=lambda name=name: world.describe(name),
        )
        cond = condition(world, name, kind)
        assert cond["message"], f"{name}: a condition without a message tells the user nothing"
        assert reason.lower() in (cond.get("reason") or "").lower() or kind == "Conflict", (name, cond)
    assert "GPUWorkload/good" in condition(world, "duplicate", "Conflict")["message"]
    # The first GPUWorkload keeps its target: no conflict for it, and it still decides.
    assert condition(world, "good", "Conflict").get("status") != "True"
    gpu_util.set(ns, 20, selector={"app": "chat"})
    world.cluster.apply(
        gpu_workload(
            "good", "chat", maxReplicas=3, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}
        ),
        ns,
    )
    wait_for(lambda: world.replicas("chat") == 1, timeout=60, describe=lambda: world.describe("good"))
