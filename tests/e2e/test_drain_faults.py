"""Drains that go wrong, against the real API server, scheduler and controllers: the node is deleted
by someone else mid-drain, or an evicted pod's replacement never becomes Ready; and a long drain
holds up neither the GPUWorkloads nor the pools' passes.

Both hold the drain in its wait phase the same deterministic way: the workload's pod template carries
a scheduling gate, so every replacement the ReplicaSet creates stays Pending until the test lifts
the gate (the first pod is un-gated by hand, like a rollout controller would). The other pod, on the
other node, is protected, so the operator can only ever drain the gated workload's node.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
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
from tests.support.operator_process import OperatorProcess, PrivatePrometheus, prometheus_sees, wait_passes
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

GATE = "rightsizer.io/test-hold"
INTENT = "rightsizer.io/disruption-intent"


def gated_app(fleet: Fleet, name: str) -> dict[str, Any]:
    app = gpu_app(fleet, name, "a100", 1)
    app["spec"]["template"]["spec"]["schedulingGates"] = [{"name": GATE}]
    return app


def pods_of(cluster: Cluster, namespace: str, app: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if not p.metadata.deletion_timestamp]


def ungate(cluster: Cluster, namespace: str, app: str) -> None:
    for pod in pods_of(cluster, namespace, app):
        if pod.spec.scheduling_gates:
            patch = '[{"op": "remove", "path": "/spec/schedulingGates"}]'
            cluster.kubectl("patch", "pod", pod.metadata.name, "-n", namespace, "--type=json", "-p", patch)


def gated_replacement_pending(cluster: Cluster, namespace: str, app: str) -> bool:
    pods = pods_of(cluster, namespace, app)
    return len(pods) == 1 and not pods[0].spec.node_name and bool(pods[0].spec.scheduling_gates)


def two_apps_on_two_nodes(cluster: Cluster, namespace: str, fleet: Fleet) -> str:
    """A protected anchor on one node and a gated app on the other; returns the gated app's node."""
    fleet.add_nodes("a100", A100_80GB_X8, 2)
    protected = {"rightsizer.io/do-not-disrupt": "true"}
    cluster.apply(gpu_app(fleet, "anchor", "a100", 4, annotations=protected), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 1, timeout=60)
    cluster.apply(gated_app(fleet, "held"), namespace)
    wait_for(lambda: pods_of(cluster, namespace, "held"), timeout=30)
    ungate(cluster, namespace, "held")
    wait_for(
        lambda: all_available(cluster, namespace) and len(running_pods(cluster, namespace)) == 2,
        timeout=60,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    nodes = {name.split("-")[0]: node for name, (_, node) in running_pods(cluster, namespace).items()}
    assert nodes["anchor"] != nodes["held"], f"the scheduler should have spread the pods: {nodes}"
    return nodes["held"]


def events(cluster: Cluster, reason: str, node: str | None = None) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(field_selector=f"reason={reason}")
    return [e for e in found.items if node is None or e.involved_object.name == node]


def intents(fleet: Fleet) -> list[str]:
    return [n.metadata.name for n in fleet.nodes("a100") if INTENT in (n.metadata.annotations or {})]


def test_a_node_deleted_mid_drain_ends_the_wait_at_once_and_the_next_pass_plans_on_what_is_left(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    drained = two_apps_on_two_nodes(cluster, namespace, fleet)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    timeout = 120
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=(*operator_args(fleet), "--drain-timeout", str(timeout)),
    ) as op:
        wait_for(
            lambda: fleet.tainted() == [drained] and gated_replacement_pending(cluster, namespace, "held"),
            timeout=60,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        # The drain now waits for a replacement that cannot schedule: someone deletes the node.
        fleet.core.delete_node(drained)
        deleted = time.monotonic()
        wait_for(
            lambda: events(cluster, "DrainNodeGone", drained),
            timeout=30,
            interval=0.5,
            describe=lambda: op.log()[-3000:],
        )
        assert time.monotonic() - deleted < 15, "noticed at the next poll, not at the drain timeout"
        message = events(cluster, "DrainNodeGone", drained)[0].message
        assert "deleted by someone else" in message and "held-" in message, message
        assert fleet.tainted() == [] and intents(fleet) == [], "no taint or intent left on any node"

        # The next passes plan on the one node left: it is the pool, and the replacement lands there.
        wait_for(
            lambda: fleet.status("a100").get("nodes") == 1,
            timeout=20,
            describe=lambda: str(fleet.status("a100")),
        )
        ungate(cluster, namespace, "held")
        wait_for(
            lambda: all_available(cluster, namespace) and len(running_pods(cluster, namespace)) == 2,
            timeout=60,
            describe=lambda: deployments_summary(cluster, namespace),
        )
        wait_passes(op, fleet.pool("a100"), 2)  # passes on the new state
        assert fleet.tainted() == [] and len(fleet.nodes("a100")) == 1
        assert not events(cluster, "DrainRemovalFailed") and not events(cluster, "RemovalFailed")
        assert op.proc.poll() is None, op.log()[-3000:]


def test_a_replacement_that_never_becomes_ready_rolls_the_drain_back_and_the_node_backs_off(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    drained = two_apps_on_two_nodes(cluster, namespace, fleet)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    timeout = 20
    args = (*operator_args(fleet), "--drain-timeout", str(timeout), "--drain-backoff", "600")
    with OperatorProcess.start(cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=args) as op:
        wait_for(
            lambda: fleet.tainted() == [drained],
            timeout=60,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        tainted_at = time.monotonic()
        wait_for(
            lambda: events(cluster, "DrainTimedOut", drained),
            timeout=timeout + 20,
            interval=0.5,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        waited = time.monotonic() - tainted_at
        assert timeout - 2 <= waited <= timeout + 15, f"the wait is bounded by the drain timeout: {waited}s"
        message = events(cluster, "DrainTimedOut", drained)[0].message
        assert f"{namespace}/held-" in message and f"ReplicaSet {namespace}/held-" in message, message
        assert f"node {drained} kept" in message
        # Rolled back: untainted, no intent, the node is still there.
        wait_for(lambda: fleet.tainted() == [], timeout=10)
        assert intents(fleet) == [] and drained in {n.metadata.name for n in fleet.nodes("a100")}
        # The pool's own event says when the node may be tried again.
        wait_for(
            lambda: any("next attempt in" in e.message for e in events(cluster, "DrainTimedOut")),
            timeout=10,
            describe=lambda: str([e.message for e in events(cluster, "DrainTimedOut")]),
        )

        # Whatever kept the replacement from starting goes away; it comes back to the drained node,
        # which is at once a consolidation candidate again. It must not be drained again so soon.
        ungate(cluster, namespace, "held")
        wait_for(lambda: all_available(cluster, namespace), timeout=60)
        before = running_pods(cluster, namespace)
        with watch_taints(fleet) as samples:
            wait_passes(op, fleet.pool("a100"), 6)
        assert samples and max(samples) == 0, "the node was drained again during its back-off"
        assert running_pods(cluster, namespace) == before, "a pod was evicted again"
        assert len(fleet.nodes("a100")) == 2
        assert op.proc.poll() is None


def test_while_prometheus_is_down_no_node_is_drained_and_the_pool_says_why(
    cluster: Cluster, namespace: str, fleet: Fleet
) -> None:
    drained = two_apps_on_two_nodes(cluster, namespace, fleet)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with PrivatePrometheus.start() as prom:
        wait_for(lambda: prometheus_sees(prom.url, namespace, "held", 1), timeout=30)
        prom.stop()
        with (
            OperatorProcess.start(
                cluster.kubeconfig, namespace, prom.url, extra_args=operator_args(fleet)
            ) as op,
            watch_taints(fleet) as samples,
        ):
            wait_for(
                lambda: condition(fleet.status("a100"), "MetricsAvailable").get("status") == "False",
                timeout=30,
                describe=lambda: f"{fleet.status('a100')}\n{op.log()[-3000:]}",
            )
            wait_passes(op, fleet.pool("a100"), 4)  # passes that would have drained the held app's node
            assert samples and max(samples) == 0, "a node was tainted while GPU activity was unknown"
            assert events(cluster, "MetricsUnavailable")
            held = condition(fleet.status("a100"), "MetricsAvailable")
            assert (
                held["reason"] == "MetricsUnavailable" and "no node with pods is drained" in held["message"]
            )

            # Prometheus is back: the operator sees the GPUs again and consolidates.
            prom.restart()

            def consolidated() -> bool:
                ungate(cluster, namespace, "held")  # the evicted pod's replacement may start
                return drained not in {n.metadata.name for n in fleet.nodes("a100")}

            wait_for(
                consolidated,
                timeout=120,
                describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
            )
            # The pass that removed the node writes the pool's status when it ends.
            wait_for(
                lambda: condition(fleet.status("a100"), "MetricsAvailable").get("status") == "True",
                timeout=30,
            )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == kind), {})


def metric(operator: OperatorProcess, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in requests.get(operator.metrics_url, timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_a_long_drain_stalls_neither_the_workloads_nor_the_pools(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    drained = two_apps_on_two_nodes(cluster, namespace, fleet)
    world = World(cluster, namespace)
    for i in range(3):
        world.run_gpu_app(gpu_util, f"serve-{i}", 1, 50)
        cluster.apply(gpu_workload(f"serve-{i}", f"serve-{i}", mode="Recommend"), namespace)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    for i in range(8):  # as many pools as kopf has workers: each one's pass must still run
        fleet.node_pool(f"idle{i}", A100_80GB_X8, 3.0)
    pool = fleet.pool("a100")
    args = (*operator_args(fleet), "--drain-timeout", "120")
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, interval=2, extra_args=args
    ) as op:
        # held's replacement is gated: the drain waits for it, up to two minutes.
        wait_for(lambda: fleet.tainted() == [drained], timeout=60, interval=0.5, describe=op.log)
        reconciles, passes = (
            metric(op, "rightsizer_reconcile_total"),
            metric(op, "rightsizer_pool_passes_total", f'pool="{pool}"'),
        )
        started = time.monotonic()
        wait_for(
            lambda: metric(op, "rightsizer_reconcile_total") >= reconciles + 3 * 5,
            timeout=40,
            describe=lambda: f"{metric(op, 'rightsizer_reconcile_total') - reconciles} reconciles",
        )
        wait_for(
            lambda: metric(op, "rightsizer_pool_passes_total", f'pool="{pool}"') >= passes + 3, timeout=30
        )
        elapsed = time.monotonic() - started
        assert fleet.tainted() == [drained], "the drain should still be waiting"
        # Every workload was reconciled about every 2 s, and the draining pool planned again, meanwhile.
        assert elapsed < 40, f"reconciles stalled during the drain: {elapsed:.0f}s for 15"
        ungate(cluster, namespace, "held")
        wait_for(lambda: drained not in {n.metadata.name for n in fleet.nodes("a100")}, timeout=120)
