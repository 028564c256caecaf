"""GPU Rightsizer beside the real Karpenter: Karpenter launches the nodes (its kwok cloud provider), the
real scheduler places the pods, the operator decides GPU-aware consolidation and removes a node by
deleting its NodeClaim, and Karpenter's termination flow drains and deletes it.

The recommended split is the NodePools' default here: Karpenter's ``consolidationPolicy: WhenEmpty``
(it provisions and removes empty nodes), GPU Rightsizer's ``WhenUnderutilized``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from decimal import Decimal
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.karpenter import GROUP, NODEPOOL_LABEL, VERSION, Karpenter, shape
from tests.support.operator_process import OperatorProcess, wait_passes

pytestmark = pytest.mark.e2e

OWNER_LABEL = "rightsizer.io/test-owner"
OPERATOR_ARGS = ("--consolidation-interval", "2", "--drain-timeout", "90", "--intent-lease", "10")


@pytest.fixture(scope="module")
def karpenter_identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chart installed with its Karpenter provider on: the operator runs with exactly its RBAC."""
    workdir = tmp_path_factory.mktemp("karpenter-identity")
    with chart_identity(cluster.kubeconfig, workdir, {"providers": {"karpenter": True}}) as kubeconfig:
        yield kubeconfig


def run_operator(cluster: Cluster, namespace: str, karpenter: Karpenter, identity: str, *args: str) -> Any:
    """The operator, as the chart's ServiceAccount, consolidating only this test's GPUNodePools."""
    extra = (*OPERATOR_ARGS, *args, "--pool-selector", f"{OWNER_LABEL}={karpenter.id}")
    return OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=extra,
        identity=identity,
        cluster_wide=True,
    )


def gpu_app(
    karpenter: Karpenter,
    pool: str,
    name: str,
    gpus: int,
    *,
    replicas: int = 1,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of GPU pods that only the test's NodePool `pool` can host."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "nodeSelector": {NODEPOOL_LABEL: pool},
                    "tolerations": [karpenter.toleration()],
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": str(gpus)},
                                "limits": {"nvidia.com/gpu": str(gpus)},
                            },
                        }
                    ],
                },
            },
        },
    }


def gpu_node_pool(
    cluster: Cluster, karpenter: Karpenter, pool: str, kind: str, *, minimal: bool = False, budget: str = "1"
) -> str:
    """The GPUNodePool over Karpenter's NodePool `pool`; `minimal`: without a nodeSelector and prices,
    which the pool then takes from the NodePool and its nodes' instance types."""
    priced = shape(kind)
    explicit = {"nodeSelector": {NODEPOOL_LABEL: pool}, "pricePerNodeHour": priced.on_demand}
    cluster.apply(
        {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "GPUNodePool",
            "metadata": {"name": pool, "labels": {OWNER_LABEL: karpenter.id}},
            "spec": {
                **({} if minimal else explicit),
                "provider": {"type": "karpenter", "nodePool": pool},
                "gpuModel": priced.shape.gpu_product,
                "gpusPerNode": priced.shape.gpus,
                "consolidationPolicy": "WhenUnderutilized",
                "consolidateAfter": "0s",
                "scaleDownAfter": "0s",
                "startupGracePeriod": "0s",
                "disruption": {"budgets": [{"nodes": budget}]},
            },
        }
    )
    return pool


def pods_on(cluster: Cluster, namespace: str) -> dict[str, tuple[str, str]]:
    """Running pod name → (uid, node)."""
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    return {
        p.metadata.name: (p.metadata.uid, p.spec.node_name)
        for p in pods
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


def fragment(cluster: Cluster, karpenter: Karpenter, namespace: str, pool: str, nodes: int) -> dict[str, str]:
    """`nodes` Karpenter nodes of 4 GPUs, each left holding one 1-GPU pod of Deployment `small`:
    3-GPU pods make Karpenter launch one node each, `small` fills the GPU left on each, then the
    3-GPU work finishes. Returns small's pods → node."""
    for i in range(nodes):
        cluster.apply(gpu_app(karpenter, pool, f"big-{i}", 3), namespace)
    wait_for(
        lambda: len(karpenter.ready_nodes(pool)) == nodes and len(pods_on(cluster, namespace)) == nodes,
        timeout=120,
        describe=lambda: f"{pods_on(cluster, namespace)}\n{karpenter.log()[-3000:]}",
    )
    cluster.apply(gpu_app(karpenter, pool, "small", 1, replicas=nodes), namespace)
    wait_for(lambda: len(pods_on(cluster, namespace)) == 2 * nodes, timeout=60)
    apps = client.AppsV1Api(cluster.api)
    for i in range(nodes):
        apps.delete_namespaced_deployment(f"big-{i}", namespace)
    wait_for(lambda: len(pods_on(cluster, namespace)) == nodes, timeout=60)
    small = {name: node for name, (_, node) in pods_on(cluster, namespace).items()}
    assert len(set(small.values())) == nodes, f"the scheduler should have put one pod per node: {small}"
    return small


def pool_status(cluster: Cluster, pool: str) -> dict[str, Any]:
    gpu_pool = client.CustomObjectsApi(cluster.api).get_cluster_custom_object(
        "rightsizer.io", "v1alpha1", "gpunodepools", pool
    )
    return dict(gpu_pool.get("status") or {})


def nodepool_spec(cluster: Cluster, pool: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(cluster.api).get_cluster_custom_object(GROUP, VERSION, "nodepools", pool)[
            "spec"
        ]
    )


def consolidated_to_one_node(
    cluster: Cluster, namespace: str, karpenter: Karpenter, pool: str, operator: OperatorProcess
) -> None:
    """Wait until the pool of three fragmented nodes is down to one NodeClaim and node, its three pods
    Running."""
    wait_for(
        lambda: len(karpenter.claims(pool)) == 1 and len(karpenter.nodes(pool)) == 1,
        timeout=240,
        interval=2,
        describe=lambda: (
            f"{pods_on(cluster, namespace)}\n{operator.log()[-3000:]}\n{karpenter.log()[-2000:]}"
        ),
    )
    wait_for(lambda: len(pods_on(cluster, namespace)) == 3, timeout=60)


def test_karpenter_nodes_are_emptied_by_the_operator_and_removed_through_their_nodeclaims(
    cluster: Cluster, namespace: str, karpenter: Karpenter, gpu_util: GpuUtilization, karpenter_identity: str
) -> None:
    gpu_util.set(namespace, 50)  # busy pods: moved by consolidation, never stopped
    pool = karpenter.node_pool("gpu-l4-x4")
    small = fragment(cluster, karpenter, namespace, pool, 3)
    claims_before = {c["metadata"]["name"] for c in karpenter.claims(pool)}
    assert len(claims_before) == 3
    spec_before = nodepool_spec(cluster, pool)

    # The pool names only its NodePool: its nodes are the NodePool's, priced from their instance type.
    gpu_node_pool(cluster, karpenter, pool, "gpu-l4-x4", minimal=True)
    with run_operator(cluster, namespace, karpenter, karpenter_identity) as operator:
        consolidated_to_one_node(cluster, namespace, karpenter, pool, operator)
        # One g6.12xlarge left, at the price Karpenter's instance types give it, not the default table's.
        price = Decimal(str(shape("gpu-l4-x4").on_demand))
        wait_for(
            lambda: (
                pool_status(cluster, pool).get("nodes") == 1
                and Decimal(str(pool_status(cluster, pool).get("costPerHour"))) == price
            ),
            timeout=60,
            describe=lambda: f"{pool_status(cluster, pool)}\n{operator.log()[-2000:]}",
        )

    after = pods_on(cluster, namespace)
    (kept,) = karpenter.nodes(pool)
    assert {node for _, node in after.values()} == {kept.metadata.name}
    # The kept node is one Karpenter launched for the test, not a replacement: no scale-up was needed.
    assert {c["metadata"]["name"] for c in karpenter.claims(pool)} <= claims_before
    assert kept.metadata.name in small.values()
    # Two pods moved, one stayed: the operator moved the fewest it could.
    assert sum(1 for name in small if name in after) == 1
    assert nodepool_spec(cluster, pool) == spec_before, "the user's NodePool (limits included) is left alone"
    log = karpenter.log()
    assert "deleted nodeclaim" in log.lower() or "finalized" in log.lower() or "deleted node" in log.lower()


def test_pods_karpenter_protects_are_never_moved_by_the_operator(
    cluster: Cluster, namespace: str, karpenter: Karpenter, gpu_util: GpuUtilization, karpenter_identity: str
) -> None:
    gpu_util.set(namespace, 50)
    pool = karpenter.node_pool("gpu-l4-x4")
    small = fragment(cluster, karpenter, namespace, pool, 2)
    guarded, free = sorted(small)
    client.CoreV1Api(cluster.api).patch_namespaced_pod(
        guarded, namespace, {"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}}
    )
    gpu_node_pool(cluster, karpenter, pool, "gpu-l4-x4")
    with run_operator(cluster, namespace, karpenter, karpenter_identity) as operator:
        # The unprotected pod moves onto the protected pod's node; that node stays.
        wait_for(
            lambda: len(karpenter.nodes(pool)) == 1,
            timeout=240,
            interval=2,
            describe=lambda: f"{pods_on(cluster, namespace)}\n{operator.log()[-3000:]}",
        )
        wait_passes(operator, pool, 3)
        after = pods_on(cluster, namespace)
    assert after[guarded][1] == small[guarded], "the do-not-disrupt pod was moved"
    assert free not in after
    assert {node for _, node in after.values()} == {small[guarded]}


HOLD = "rightsizer.io/e2e-hold"


def hold(core: client.CoreV1Api, node: str, on: bool) -> None:
    """Add or take away a finalizer of the test's own, beside Karpenter's."""
    finalizers = [f for f in core.read_node(node).metadata.finalizers or [] if f != HOLD]
    # A JSON patch: a strategic merge patch merges finalizer lists, so it could not take one away.
    value = [*finalizers, HOLD] if on else finalizers
    core.patch_node(node, [{"op": "add", "path": "/metadata/finalizers", "value": value}])


def ready_condition(cluster: Cluster, pool: str) -> dict[str, Any]:
    conditions = pool_status(cluster, pool).get("conditions") or []
    return next((c for c in conditions if c["type"] == "ProviderReady"), {})


def test_a_node_karpenter_cannot_finish_removing_holds_the_pool_until_it_is_gone(
    cluster: Cluster, namespace: str, karpenter: Karpenter, karpenter_identity: str
) -> None:
    # Karpenter removes no empty node itself here: the operator removes both, one after the other.
    pool = karpenter.node_pool("gpu-l4-x4", consolidate_after="Never")
    stuck, held = karpenter.launch(pool), karpenter.launch(pool)
    core = client.CoreV1Api(cluster.api)
    # A finalizer nobody removes (as a storage or network plugin's can be): Karpenter's termination
    # flow deletes the node, and it stays, terminating. `held` is protected until `stuck` is stuck.
    hold(core, stuck, True)
    core.patch_node(held, {"metadata": {"annotations": {"rightsizer.io/do-not-disrupt": "true"}}})
    gpu_node_pool(cluster, karpenter, pool, "gpu-l4-x4", minimal=True, budget="100%")
    try:
        with run_operator(
            cluster, namespace, karpenter, karpenter_identity, "--removal-timeout", "10"
        ) as operator:
            wait_for(
                lambda: ready_condition(cluster, pool).get("reason") == "RemovalStuck",
                timeout=180,
                interval=2,
                describe=lambda: f"{pool_status(cluster, pool)}\n{operator.log()[-3000:]}",
            )
            message = ready_condition(cluster, pool)["message"]
            assert stuck in message and f"karpenter: NodePool {pool}" in message, message
            assert core.read_node(stuck).metadata.deletion_timestamp, "Karpenter never started removing it"

            core.patch_node(held, {"metadata": {"annotations": {"rightsizer.io/do-not-disrupt": None}}})
            wait_passes(operator, pool, 3)
            annotations = core.read_node(held).metadata.annotations or {}
            assert "rightsizer.io/disruption-intent" not in annotations, "drained while removals were stuck"
            assert len(karpenter.claims(pool)) == 2

            hold(core, stuck, False)
            wait_for(
                lambda: not karpenter.nodes(pool) and not karpenter.claims(pool),
                timeout=180,
                interval=2,
                describe=lambda: f"{pool_status(cluster, pool)}\n{operator.log()[-3000:]}",
            )
            wait_for(lambda: ready_condition(cluster, pool).get("status") == "True", timeout=30)
    finally:
        with suppress(ApiException):
            hold(core, stuck, False)


def test_karpenter_restarted_while_a_removal_waits_on_it_finishes_it_and_the_operator_goes_on(
    cluster: Cluster, namespace: str, karpenter: Karpenter, gpu_util: GpuUtilization, karpenter_identity: str
) -> None:
    gpu_util.set(namespace, 50)
    pool = karpenter.node_pool("gpu-l4-x4")
    fragment(cluster, karpenter, namespace, pool, 3)
    spec_before = nodepool_spec(cluster, pool)
    gpu_node_pool(cluster, karpenter, pool, "gpu-l4-x4", minimal=True)

    def deleting() -> list[str]:
        claims = karpenter.claims(pool)
        return [c["metadata"]["name"] for c in claims if c["metadata"].get("deletionTimestamp")]

    karpenter.kill()
    try:
        with run_operator(cluster, namespace, karpenter, karpenter_identity) as operator:
            # The operator drains a node and deletes its NodeClaim; nobody finalizes it meanwhile.
            wait_for(deleting, timeout=180, interval=2, describe=lambda: operator.log()[-3000:])
            wait_passes(operator, pool, 3)
            assert len(deleting()) == 1 and len(karpenter.claims(pool)) == 3, "one removal at a time"
            karpenter.start_again()
            consolidated_to_one_node(cluster, namespace, karpenter, pool, operator)
            wait_for(lambda: pool_status(cluster, pool).get("nodes") == 1, timeout=60)
            assert operator.proc.poll() is None, operator.log()[-3000:]
    finally:
        karpenter.start_again()
    assert nodepool_spec(cluster, pool) == spec_before, "the user's NodePool is left alone"
