"""Bad input: GPUWorkloads and GPUNodePools the API server refuses naming the field, or that are
reported in status with a clear condition while everything else keeps being served."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8, L4_X4
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import (
    OWNER_LABEL,
    Fleet,
    all_available,
    deployments_summary,
    gpu_app,
    operator_args,
    running_pods,
)
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
     "Ready", "False", "TargetNotFound"),
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


# -- GPUNodePools ----------------------------------------------------------------------------------

PRICE_FIELDS = (
    "pricePerGpuHour",
    "pricePerNodeHour",
    "cpuCorePricePerHour",
    "energyPricePerKwh",
    "overheadPerHour",
)
NONSENSE_PRICES = st.one_of(
    st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1.1e7, allow_nan=False, allow_infinity=False),
    st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "inf", "1e400", "3", "", "$3.00"]),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=2),
    st.dictionaries(
        st.sampled_from(["amount", "currency"]), st.integers(min_value=0, max_value=9), max_size=2
    ),
)


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "crds/")


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(PRICE_FIELDS), price=NONSENSE_PRICES)
def test_nonsense_prices_are_refused_by_the_api_server_naming_the_field(
    cluster: Cluster, crds: None, field: str, price: object
) -> None:
    spec: dict[str, Any] = {
        "nodeSelector": {"rightsizer.io/pool": "nowhere"},
        "gpuModel": "NVIDIA-A100-SXM4-80GB",
        "gpusPerNode": 8,
        "pricePerGpuHour": 3,
        field: price,
    }
    if field == "pricePerNodeHour":
        del spec["pricePerGpuHour"]
    body = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": "nonsense-price"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as refused:
        # A server-side dry run: validated exactly like a real create, and nothing is stored.
        client.CustomObjectsApi(cluster.api).create_cluster_custom_object(
            "rightsizer.io", "v1alpha1", "gpunodepools", body, dry_run="All"
        )
    assert refused.value.status == 422, refused.value.body
    assert f"spec.{field}" in refused.value.body, refused.value.body


def two_pools_with_a_small_pod_per_node(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Two A100 and two L4 nodes with one small GPU pod each (each pool could empty one of its two
    nodes); the A100 nodes, and the pods as they run."""
    a100 = fleet.add_nodes("a100", A100_80GB_X8, 2)
    l4 = fleet.add_nodes("l4", L4_X4, 2)
    for i in range(len(a100)):
        cluster.apply(gpu_app(fleet, f"train-{i}", "a100", 1), namespace)
    for i in range(len(l4)):
        cluster.apply(gpu_app(fleet, f"serve-{i}", "l4", 1), namespace)
    wait_for(
        lambda: all_available(cluster, namespace) and len(running_pods(cluster, namespace)) == 4,
        timeout=60,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    return a100, running_pods(cluster, namespace)


def test_pools_selecting_the_same_nodes_are_reported_and_left_alone_while_other_pools_are_served(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    a100, before = two_pools_with_a_small_pod_per_node(cluster, namespace, fleet)
    assert len({node for name, (_, node) in before.items() if name.startswith("train-")}) == 2
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    # A second pool selecting every A100 node of the test: the same two nodes.
    fleet.node_pool(
        "all-a100",
        A100_80GB_X8,
        3.0,
        nodeSelector={"nvidia.com/gpu.product": A100_80GB_X8.gpu_product, OWNER_LABEL: fleet.id},
    )
    fleet.node_pool("l4", L4_X4, 0.8)

    def conflict(kind: str) -> dict[str, Any]:
        conditions = fleet.status(kind).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Conflict"), {})

    def in_conflict(kind: str) -> Callable[[], bool]:
        return lambda: conflict(kind).get("status") == "True"

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        # The other pool is served: its emptier L4 node is drained and removed.
        wait_for(
            lambda: len(fleet.nodes("l4")) == 1 and all_available(cluster, namespace),
            timeout=90,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        for kind, other in (("a100", "all-a100"), ("all-a100", "a100")):
            wait_for(in_conflict(kind), timeout=20, describe=lambda: op.log()[-3000:])
            message = conflict(kind)["message"]
            assert (
                f"nodes {', '.join(sorted(a100))} also selected by GPUNodePool {fleet.pool(other)}" in message
            )
            ready = next(c for c in fleet.status(kind)["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "OverlappingSelectors")
        warnings = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(
            field_selector="reason=OverlappingSelectors"
        )
        assert {e.involved_object.name for e in warnings.items} >= {
            fleet.pool("a100"),
            fleet.pool("all-a100"),
        }
        # The contested nodes were never drained: both still there, their pods never evicted.
        assert {n.metadata.name for n in fleet.nodes("a100")} == set(a100)
        after = running_pods(cluster, namespace)
        assert {k: v for k, v in after.items() if k.startswith("train-")} == {
            k: v for k, v in before.items() if k.startswith("train-")
        }

        # Once the selectors are disjoint again, the pool is served like any other.
        cluster.kubectl("delete", "gpunodepool", fleet.pool("all-a100"))
        wait_for(lambda: conflict("a100").get("status") == "False", timeout=20)
        wait_for(
            lambda: len(fleet.nodes("a100")) == 1 and all_available(cluster, namespace),
            timeout=60,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )


def test_a_pool_the_api_server_accepts_but_that_does_not_validate_holds_and_says_which_field(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    # The CRD checks a budget schedule's shape only: minute 61 is stored. Read as "no budget" it would
    # mean no limit; the pool must instead hold, say which field, and the other pools be served.
    a100, before = two_pools_with_a_small_pod_per_node(cluster, namespace, fleet)
    budget = {"nodes": "1", "schedule": "61 * * * *", "duration": "1h"}
    fleet.node_pool("a100", A100_80GB_X8, 3.0, disruption={"budgets": [budget]})
    fleet.node_pool("l4", L4_X4, 0.8)

    def ready(kind: str) -> dict[str, Any]:
        conditions = fleet.status(kind).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        wait_for(
            lambda: ready("a100").get("reason") == "InvalidPool",
            timeout=30,
            describe=lambda: f"{fleet.status('a100')}\n{op.log()[-3000:]}",
        )
        assert ready("a100")["status"] == "False"
        assert "spec.disruption.budgets.0.schedule: invalid cron schedule" in ready("a100")["message"]
        # The other pool is served: its emptier L4 node is drained and removed.
        wait_for(
            lambda: len(fleet.nodes("l4")) == 1 and all_available(cluster, namespace),
            timeout=90,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        warnings = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(
            field_selector=f"reason=InvalidPool,involvedObject.name={fleet.pool('a100')}"
        )
        assert any("spec.disruption.budgets.0.schedule" in e.message for e in warnings.items)
        # The invalid pool's nodes were never drained: both still there, their pods never evicted.
        assert {n.metadata.name for n in fleet.nodes("a100")} == set(a100)
        after = running_pods(cluster, namespace)
        assert {k: v for k, v in after.items() if k.startswith("train-")} == {
            k: v for k, v in before.items() if k.startswith("train-")
        }
