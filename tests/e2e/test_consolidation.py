"""GPU nodes consolidated by the real operator process against the real API server and scheduler.

Each test brings its own fake nodes and GPUNodePools (tests/support/fleet.py): the operator only
ever touches nodes of pools that have a GPUNodePool, so the shared fleet is left alone.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8, L4_X4
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import (
    Fleet,
    all_available,
    deployments_summary,
    gpu_app,
    operator_args,
    running_pods,
    watch_taints,
)
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e


def test_fragmented_gpu_deployments_are_packed_and_emptied_nodes_removed(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    gpu_util.set(namespace, 50)  # every GPU busy: idle cost is only the unrequested GPUs
    a100 = fleet.add_nodes("a100", A100_80GB_X8, 4)
    l4 = fleet.add_nodes("l4", L4_X4, 4)
    # Protected pods, each pinned to its node before the others arrive.
    cluster.apply(gpu_app(fleet, "guarded", "a100", 1, node=a100[3]), namespace)
    cluster.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
        namespace,
    )
    cluster.apply(
        gpu_app(fleet, "pinned", "l4", 1, node=l4[3], annotations={"rightsizer.io/do-not-disrupt": "true"}),
        namespace,
    )
    bare = gpu_app(fleet, "bare", "a100", 1, node=a100[2])["spec"]["template"]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bare", "labels": {"app": "bare"}},
            "spec": bare["spec"],
        },
        namespace,
    )
    # Ten GPU apps, spread by the scheduler (preferred anti-affinity): every node gets some.
    for i, gpus in enumerate((2, 1, 1, 2, 1)):
        cluster.apply(gpu_app(fleet, f"train-{i}", "a100", gpus), namespace)
    for i, gpus in enumerate((1, 1, 2, 1, 1)):
        cluster.apply(gpu_app(fleet, f"serve-{i}", "l4", gpus), namespace)
    wait_for(
        lambda: len(running_pods(cluster, namespace)) == 13,
        timeout=90,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    wait_for(
        lambda: (
            client.PolicyV1Api(cluster.api)
            .read_namespaced_pod_disruption_budget("guarded", namespace)
            .status.current_healthy
            == 1
        ),
        timeout=60,
    )
    before = running_pods(cluster, namespace)
    used = {node for _, node in before.values()}
    assert len(used) >= 6, f"the scheduler should have spread the pods: {sorted(used)}"
    protected = {
        name: before[name] for name in before if name == "bare" or name.startswith(("guarded-", "pinned-"))
    }
    assert len(protected) == 3

    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    fleet.node_pool("l4", L4_X4, 0.8)
    with (
        watch_taints(fleet) as samples,
        OperatorProcess.start(
            cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
        ) as operator,
    ):
        wait_for(
            lambda: (
                len(fleet.nodes("a100")) == 2
                and len(fleet.nodes("l4")) == 2
                and all_available(cluster, namespace)
            ),
            timeout=300,
            interval=2,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{operator.log()[-4000:]}",
        )
        wait_for(
            lambda: fleet.status("a100").get("nodes") == 2 and fleet.status("l4").get("nodes") == 2,
            timeout=30,
        )
    assert samples and max(samples) <= 1, f"budget of 1 node exceeded: max {max(samples)} tainted at once"
    assert fleet.tainted() == []

    after = running_pods(cluster, namespace)
    for name, (uid, node) in protected.items():
        assert after.get(name) == (uid, node), f"protected pod {name} was moved or evicted"
    kept = {n.metadata.name for n in fleet.nodes("a100") + fleet.nodes("l4")}
    assert {a100[2], a100[3], l4[3]} <= kept
    assert len(after) == 13 and {node for _, node in after.values()} <= kept

    a100_status = fleet.status("a100")
    assert a100_status["gpusAllocatable"] == 16 and a100_status["gpusRequested"] == 9
    # 16 GPUs at $3.00 instead of 32: the pool's cost follows its nodes.
    assert a100_status["costPerHour"] == pytest.approx(48.0)
    assert a100_status["idleCostPerHour"] == pytest.approx(21.0)
    assert a100_status.get("lastScaleDown")
    events = (
        client.CoreV1Api(cluster.api).list_event_for_all_namespaces(field_selector="reason=NodeRemoved").items
    )
    assert {e.involved_object.name for e in events} >= {a100[0], a100[1]} - kept


def test_operator_killed_mid_drain_leaves_no_node_tainted_and_no_pod_lost(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    nodes = fleet.add_nodes("a100", A100_80GB_X8, 2)
    cluster.apply(gpu_app(fleet, "anchor", "a100", 4), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 1, timeout=60)
    # Slow to become available: the drain waits for it, which gives the test time to kill.
    cluster.apply(gpu_app(fleet, "slow", "a100", 1, min_ready_seconds=40), namespace)
    wait_for(
        lambda: all_available(cluster, namespace) and len(running_pods(cluster, namespace)) == 2, timeout=90
    )
    assert len({node for _, node in running_pods(cluster, namespace).values()}) == 2

    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        tainted = wait_for(fleet.tainted, timeout=120, interval=0.2, describe=lambda: op.log()[-3000:])
        wait_for(
            lambda: (
                not any(
                    name.startswith("slow-") and node in tainted
                    for name, (_, node) in running_pods(cluster, namespace).items()
                )
            ),
            timeout=30,
            interval=0.2,
        )
        op.proc.kill()  # SIGKILL: no chance to clean up
        op.proc.wait(timeout=10)
    assert fleet.tainted() == tainted, "the kill happened mid-drain"

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        wait_for(
            lambda: (
                not fleet.tainted() and all_available(cluster, namespace) and len(fleet.nodes("a100")) == 1
            ),
            timeout=180,
            interval=1,
            describe=lambda: (
                f"tainted {fleet.tainted()}\n{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}"
            ),
        )
    names = sorted(running_pods(cluster, namespace))
    assert [n.split("-")[0] for n in names] == ["anchor", "slow"], names
    assert set(nodes) & {n.metadata.name for n in fleet.nodes("a100")}


def test_idle_pool_scales_to_zero_and_comes_back_for_a_pending_gpu_pod(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    fleet.add_nodes("l4", L4_X4, 2)
    fleet.node_pool("l4", L4_X4, 0.8, min_nodes=0, maxNodes=3)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        wait_for(lambda: not fleet.nodes("l4"), timeout=120, describe=lambda: op.log()[-3000:])
        wait_for(lambda: fleet.status("l4").get("nodes") == 0, timeout=30)
        assert fleet.status("l4").get("costPerHour") == 0

        cluster.apply(gpu_app(fleet, "wake", "l4", 2), namespace)
        wait_for(
            lambda: all_available(cluster, namespace) and len(running_pods(cluster, namespace)) == 1,
            timeout=120,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        assert len(fleet.nodes("l4")) == 1
        wait_for(lambda: fleet.status("l4").get("nodes") == 1, timeout=30)


def _unspread(app: dict[str, Any], cpu: int) -> dict[str, Any]:
    """Without the test apps' preferred anti-affinity, and with `cpu` cores and as big a share of
    memory: placement is kube-scheduler's default scoring, which spreads onto the least allocated
    node by CPU and memory (an A100 node has 96 cores and 1152 GiB)."""
    spec = app["spec"]["template"]["spec"]
    spec.pop("affinity")
    spec["containers"][0]["resources"]["requests"].update({"cpu": str(cpu), "memory": f"{cpu * 12}Gi"})
    return app


def scheduled_onto(cluster: Cluster, namespace: str) -> dict[str, str]:
    """pod -> node of every placement the scheduler made in `namespace` (its Scheduled events)."""
    events = client.CoreV1Api(cluster.api).list_namespaced_event(namespace, field_selector="reason=Scheduled")
    placed: dict[str, str] = {}
    for event in events.items:
        assigned = re.match(r"Successfully assigned [^/]+/(\S+) to (\S+)", event.message or "")
        if assigned:
            placed[assigned.group(1)] = assigned.group(2)
    return placed


def test_pods_a_plan_moves_land_on_the_node_it_keeps_never_on_one_it_empties_next(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    gpu_util.set(namespace, 50)
    keep, _, _ = fleet.add_nodes("a100", A100_80GB_X8, 3)
    anchor = _unspread(
        gpu_app(fleet, "anchor", "a100", 1, node=keep, annotations={"rightsizer.io/do-not-disrupt": "true"}),
        cpu=8,
    )
    anchor["spec"]["replicas"] = 6  # the kept node is half allocated: the scheduler avoids it
    cluster.apply(anchor, namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 6, timeout=90)
    for count, mover in enumerate(("alpha", "beta"), start=7):
        cluster.apply(_unspread(gpu_app(fleet, mover, "a100", 1), cpu=16), namespace)
        wait_for(lambda count=count: len(running_pods(cluster, namespace)) == count, timeout=60)
    before = running_pods(cluster, namespace)
    emptied = {node for name, (_, node) in before.items() if name.startswith(("alpha-", "beta-"))}
    assert len(emptied) == 2 and keep not in emptied, "the scheduler spreads onto the empty nodes"

    # One plan empties both nodes into the kept one (6 + 2 GPUs); the operator drains one per pass.
    fleet.node_pool("a100", A100_80GB_X8, 3.0, disruption={"budgets": [{"nodes": "100%"}]})
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        wait_for(
            lambda: (
                [n.metadata.name for n in fleet.nodes("a100")] == [keep] and all_available(cluster, namespace)
            ),
            timeout=180,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
    moved = {pod: node for pod, node in scheduled_onto(cluster, namespace).items() if pod not in before}
    # Each mover moved once, straight to the kept node: without the marks on the plan's nodes, the
    # first mover's replacement lands on the other emptied node (less allocated) and moves again.
    assert sorted(pod.split("-")[0] for pod in moved) == ["alpha", "beta"], moved
    assert set(moved.values()) == {keep}, moved
