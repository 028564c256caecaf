"""Make-before-break against the real API server, scheduler and controllers: a drain raises an
Inference GPUWorkload's Deployment before evicting its pods, so its Ready replicas never dip; and
surge replicas that cannot start stop the drain with the count restored and the node untainted.

A protected anchor holds one node; the Deployment's pods are spread by the scheduler, so the node the
operator drains is the other one. The second test's pod template carries a scheduling gate lifted by
hand for the first pods: every replica created later (the surge) stays Pending.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import (
    Fleet,
    all_available,
    deployments_summary,
    gpu_app,
    operator_args,
    running_pods,
)
from tests.support.operator_process import OperatorProcess, wait_passes
from tests.support.world import gpu_workload

pytestmark = pytest.mark.e2e

GATE = "rightsizer.io/test-hold"
SURGE = "rightsizer.io/drain-surge"
REPLICAS = 2


def ready_replicas(cluster: Cluster, namespace: str, app: str) -> int:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sum(
        1
        for p in pods
        if not p.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


@contextmanager
def watch_ready(cluster: Cluster, namespace: str, app: str) -> Iterator[list[int]]:
    """Samples the app's Ready pods every 0.1 s until the block ends."""
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with suppress(ApiException):
                seen.append(ready_replicas(cluster, namespace, app))
            stop.wait(0.1)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)


def events(cluster: Cluster, reason: str) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(field_selector=f"reason={reason}")
    return list(found.items)


def deployment(cluster: Cluster, namespace: str, name: str) -> client.V1Deployment:
    return client.AppsV1Api(cluster.api).read_namespaced_deployment(name, namespace)


def ungate(cluster: Cluster, namespace: str, app: str) -> None:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    for pod in pods:
        if pod.spec.scheduling_gates:
            patch = '[{"op": "remove", "path": "/spec/schedulingGates"}]'
            cluster.kubectl("patch", "pod", pod.metadata.name, "-n", namespace, "--type=json", "-p", patch)


def serving_beside_an_anchor(
    cluster: Cluster, namespace: str, fleet: Fleet, web: dict[str, Any], gated: bool = False
) -> str:
    """A protected anchor on one node, the Deployment `web` with REPLICAS Ready pods (its Inference
    GPUWorkload in Recommend mode) with at least one on the other node; returns that node."""
    fleet.add_nodes("a100", A100_80GB_X8, 2)
    protected = {"rightsizer.io/do-not-disrupt": "true"}
    cluster.apply(gpu_app(fleet, "anchor", "a100", 4, annotations=protected), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 1, timeout=60)
    cluster.apply(web, namespace)
    cluster.apply(gpu_workload("web", "web", mode="Recommend"), namespace)
    if gated:
        wait_for(
            lambda: ready_replicas(cluster, namespace, "web") == 0 and _pods(cluster, namespace), timeout=30
        )
        wait_for(lambda: len(_pods(cluster, namespace)) == REPLICAS, timeout=30)
        ungate(cluster, namespace, "web")
    wait_for(
        lambda: all_available(cluster, namespace) and ready_replicas(cluster, namespace, "web") == REPLICAS,
        timeout=60,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    pods = running_pods(cluster, namespace)
    anchor = next(node for name, (_, node) in pods.items() if name.startswith("anchor-"))
    others = {node for name, (_, node) in pods.items() if name.startswith("web-") and node != anchor}
    assert len(others) == 1, f"the scheduler should have spread the pods: {pods}"
    return others.pop()


def _pods(cluster: Cluster, namespace: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector="app=web").items)


def web_app(fleet: Fleet, gated: bool = False) -> dict[str, Any]:
    app = gpu_app(fleet, "web", "a100", 1)
    app["spec"]["replicas"] = REPLICAS
    if gated:
        app["spec"]["template"]["spec"]["schedulingGates"] = [{"name": GATE}]
    return app


def test_a_drain_raises_an_inference_deployment_first_so_its_ready_replicas_never_dip(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    gpu_util.set(namespace, 10)
    drained = serving_beside_an_anchor(cluster, namespace, fleet, web_app(fleet))
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with (
        watch_ready(cluster, namespace, "web") as ready,
        OperatorProcess.start(
            cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
        ) as op,
    ):
        wait_for(
            lambda: drained not in {n.metadata.name for n in fleet.nodes("a100")},
            timeout=90,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        wait_for(
            lambda: (
                deployment(cluster, namespace, "web").spec.replicas == REPLICAS
                and all_available(cluster, namespace)
            ),
            timeout=30,
            describe=lambda: deployments_summary(cluster, namespace),
        )
        assert op.proc.poll() is None, op.log()[-3000:]
    assert ready and min(ready) >= REPLICAS, f"Ready replicas dipped during the drain: {ready}"
    assert max(ready) > REPLICAS, "the surge replicas were Ready before the eviction"
    surged = [e.message for e in events(cluster, "DrainSurge") if e.involved_object.name == drained]
    assert surged and "Deployment" in surged[0] and "/web" in surged[0], surged
    restored = [e.message for e in events(cluster, "DrainSurgeRestored") if e.involved_object.name == drained]
    assert restored and f"restored to {REPLICAS}" in restored[0], restored
    final = deployment(cluster, namespace, "web")
    assert SURGE not in (final.metadata.annotations or {})
    assert {node for _, node in running_pods(cluster, namespace).values()} == {
        n.metadata.name for n in fleet.nodes("a100")
    }


def test_surge_replicas_that_cannot_start_stop_the_drain_restore_the_count_and_untaint(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    gpu_util.set(namespace, 10)
    drained = serving_beside_an_anchor(cluster, namespace, fleet, web_app(fleet, gated=True), gated=True)
    before = running_pods(cluster, namespace)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    timeout = 15
    args = (*operator_args(fleet), "--drain-timeout", str(timeout), "--drain-backoff", "600")
    with (
        watch_ready(cluster, namespace, "web") as ready,
        OperatorProcess.start(cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=args) as op,
    ):
        wait_for(
            lambda: deployment(cluster, namespace, "web").spec.replicas > REPLICAS,
            timeout=60,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        assert fleet.tainted() == [drained]
        labels = deployment(cluster, namespace, "web").metadata.labels or {}
        assert labels.get(SURGE) == "true", "a raised owner is labelled, so it is found if orphaned"
        wait_for(
            lambda: [e for e in events(cluster, "DrainSurgeTimedOut") if e.involved_object.name == drained],
            timeout=timeout + 30,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        (event,) = [e for e in events(cluster, "DrainSurgeTimedOut") if e.involved_object.name == drained]
        assert "nothing evicted" in event.message and f"node {drained} kept" in event.message, event.message
        wait_for(lambda: fleet.tainted() == [], timeout=10)
        final = deployment(cluster, namespace, "web")
        assert final.spec.replicas == REPLICAS and SURGE not in (final.metadata.annotations or {})
        assert SURGE not in (final.metadata.labels or {})
        assert drained in {n.metadata.name for n in fleet.nodes("a100")}
        assert all(name in running_pods(cluster, namespace) for name in before), "no pod was evicted"
        assert op.proc.poll() is None, op.log()[-3000:]
    assert ready and min(ready) >= REPLICAS, f"Ready replicas dipped: {ready}"


def raised(fleet: Fleet, name: str, node: str) -> dict[str, Any]:
    """The Deployment `name` as a drain of `node` leaves it: 3 replicas, 2 of them its own."""
    app = gpu_app(fleet, name, "a100", 1)
    record = json.dumps({"node": node, "original": 2, "surge": 1, "availableBefore": 2})
    app["metadata"] |= {"annotations": {SURGE: record}, "labels": {SURGE: "true"}}
    app["spec"]["replicas"] = 3
    return app


def test_an_owner_left_raised_by_a_drain_whose_node_went_is_restored_and_a_live_drain_is_left_alone(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    (node,) = fleet.add_nodes("a100", A100_80GB_X8, 1)
    # Another operator process drains `node` right now: its intent lists `held` and its lease runs.
    held_by_other = {
        "plan": "underutilised",
        "pool": fleet.pool("a100"),
        "phase": "draining",
        "started": "2026-01-01T00:00:00+00:00",
        "pods": [],
        "holder": "another-host/1/1",
        "leaseUntil": "2099-01-01T00:00:00+00:00",
        "surges": [{"kind": "Deployment", "namespace": namespace, "name": "held"}],
    }
    cluster.kubectl("annotate", "node", node, f"rightsizer.io/disruption-intent={json.dumps(held_by_other)}")
    # Events outlive tests: the gone node's name is this test's own.
    gone = f"{namespace}-node-deleted-while-the-operator-was-down"
    cluster.apply(raised(fleet, "orphan", gone), namespace)
    cluster.apply(raised(fleet, "held", node), namespace)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as op:
        wait_for(
            lambda: deployment(cluster, namespace, "orphan").spec.replicas == 2,
            timeout=60,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        wait_passes(op, fleet.pool("a100"), 2)
        orphan, held = deployment(cluster, namespace, "orphan"), deployment(cluster, namespace, "held")
        assert SURGE not in (orphan.metadata.annotations or {}) and SURGE not in (
            orphan.metadata.labels or {}
        )
        assert held.spec.replicas == 3 and SURGE in (held.metadata.annotations or {}), "its drain still runs"
        (event,) = [e for e in events(cluster, "DrainSurgeRestored") if e.involved_object.name == gone]
        assert f"Deployment {namespace}/orphan restored to 2 replica(s)" in event.message, event.message
