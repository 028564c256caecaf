"""The operator against an API server that throttles, fails, conflicts, drops its watches, goes away
and restarts. The operator runs as the chart's ServiceAccount through a fault-injecting proxy
(tests/support/apiproxy.py), which also counts every request, so "no duplicate action" and "no lost
update" are asserted on what actually reached the API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from rightsizer.handlers.operator import connection_limit
from rightsizer.runtime.settings import Settings
from tests.support.apiproxy import ApiProxy, operator_proxy
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import (
    Fleet,
    all_available,
    deployments_summary,
    gpu_app,
    operator_args,
    running_pods,
)
from tests.support.kube_apiserver import restartable_apiserver
from tests.support.operator_process import OperatorProcess, wait_reconciles
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

INTERVAL = 2
SCALING_STATE = "rightsizer.io/scaling-state"
DISRUPTED = "rightsizer.io/disrupted"
FOREIGN_TAINT = {"key": "maintenance.example.com/window", "value": "tonight", "effect": "PreferNoSchedule"}
# What a transient API fault must never be reported as.
WRONG_VERDICTS = {"TargetNotScalable", "TargetNotFound", "InvalidSpec"}


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiProxy]:
    with operator_proxy(cluster, tmp_path) as running:
        yield running


def operator(
    cluster: Cluster, namespace: str, proxy: ApiProxy, *args: str
) -> AbstractContextManager[OperatorProcess]:
    return OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, interval=INTERVAL, extra_args=args,
        identity=proxy.kubeconfig, cluster_wide=True,
    )  # fmt: skip


def events(cluster: Cluster, namespace: str, reason: str) -> list[client.CoreV1Event]:
    items = client.CoreV1Api(cluster.api).list_namespaced_event(namespace).items
    return [e for e in items if e.reason == reason]


def wrong_verdicts(cluster: Cluster, namespace: str) -> list[str]:
    items = client.CoreV1Api(cluster.api).list_namespaced_event(namespace).items
    return [f"{e.reason}: {e.message}" for e in items if e.reason in WRONG_VERDICTS]


def scaled_up_once(world: World, name: str, replicas: int, op: OperatorProcess) -> None:
    """The scale is on record: one ScaleUp event, the scale in the scaling state (what stabilisation
    reads after a restart), the replicas in status; and no pass acts again. (lastDecision is not the
    record: each later pass overwrites it with its own NoChange.)"""
    ups = wait_for(
        lambda: events(world.cluster, world.namespace, "ScaleUp"),
        timeout=90,
        describe=lambda: f"{world.describe(name)}\n{op.log()[-3000:]}",
    )
    assert ups[0].message.endswith(f"={replicas}"), ups[0].message
    obj = world.workload(name)
    state = json.loads(obj["metadata"]["annotations"][SCALING_STATE])
    assert [change for _, change in state["scaleEvents"]] == [replicas - 2], state
    wait_for(lambda: world.workload(name)["status"]["replicas"]["desired"] == replicas, timeout=30)
    wait_reconciles(op, 3)  # passes in which a duplicate action would show
    assert world.replicas(name) == replicas
    ups = events(world.cluster, world.namespace, "ScaleUp")
    assert len(ups) == 1 and (ups[0].count or 1) == 1, [(e.message, e.count) for e in ups]


def scale_patches(proxy: ApiProxy, namespace: str, name: str) -> list[Any]:
    return proxy.requests("PATCH", rf"/namespaces/{namespace}/deployments/{name}/scale$")


def test_throttled_failing_and_unanswered_writes_end_at_the_computed_count_with_one_scale_up(
    cluster: Cluster, namespace: str, world: World, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    scale = rf"/namespaces/{namespace}/deployments/chat/scale$"
    # Discovery of the target's API answering 503 must not make a Deployment "not scalable".
    proxy.fail("GET", r"^/apis/apps/v1$", 503, times=2)
    # The first scale is applied but its answer lost; then the API server throttles and fails.
    proxy.lose_answer("PATCH", scale)
    proxy.fail("PATCH", scale, 429, times=2, retry_after=1)
    proxy.fail("PATCH", scale, 503, times=1)
    # kopf's own patches of the GPUWorkload (annotations, then status) are throttled too.
    status_patches = proxy.fail(
        "PATCH", rf"/namespaces/{namespace}/gpuworkloads/chat(/status)?$", 429, times=3
    )
    with operator(cluster, namespace, proxy) as op:
        world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=3), namespace)
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("chat"))
        scaled_up_once(world, "chat", 3, op)
        log = op.log()
    sent = scale_patches(proxy, namespace, "chat")
    assert [json.loads(r.body) for r in sent] == [{"spec": {"replicas": 3}}] * len(sent)
    assert [r.status for r in sent[:5]] == [200, 429, 429, 503, 200], [(r.status, r.forwarded) for r in sent]
    assert status_patches.applied == 3
    # Every fault was absorbed inside the pass that met it: no pass failed, nothing was reported wrong.
    assert "failed with an exception" not in log, log[-4000:]
    assert not wrong_verdicts(cluster, namespace)


def test_watches_cut_and_the_api_server_unreachable_then_the_operator_picks_up_what_changed(
    cluster: Cluster, namespace: str, world: World, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    with operator(cluster, namespace, proxy) as op:
        with proxy.down():
            # Created while the operator cannot see anything: its watches are gone, nothing answers.
            world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=3), namespace)
            time.sleep(10)  # the outage
            assert world.replicas("chat") == 2
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: f"{op.log()[-3000:]}")
        scaled_up_once(world, "chat", 3, op)

        # Every open connection cut (watches included) as the spec changes: the change still lands.
        assert proxy.drop_connections() >= 3, "the operator's watches were open"
        world.custom.patch_namespaced_custom_object(
            "rightsizer.io", "v1alpha1", namespace, "gpuworkloads", "chat", {"spec": {"maxReplicas": 4}}
        )
        generation = world.workload("chat")["metadata"]["generation"]
        wait_for(lambda: world.replicas("chat") == 4, timeout=60, describe=lambda: world.describe("chat"))
        wait_for(
            lambda: world.workload("chat")["status"]["observedGeneration"] == generation,
            timeout=30,
            describe=lambda: world.describe("chat"),
        )
    assert not wrong_verdicts(cluster, namespace)


def test_the_api_server_restarted_mid_pass_loses_no_update_and_repeats_no_action(
    cluster: Cluster, namespace: str, world: World, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    # The pass's first write after the scale: the target's cost annotations. Held there, the API
    # server dies under it and stays away longer than the pass retries.
    annotations = proxy.delay("PATCH", rf"/namespaces/{namespace}/deployments/chat$", 120)
    with operator(cluster, namespace, proxy) as op:
        world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=3), namespace)
        annotations.wait(timeout=60)
        assert world.replicas("chat") == 3  # the scale went through; the pass is half-way
        with restartable_apiserver(cluster) as apiserver:  # running and ready again, whatever happens
            apiserver.kill()
            annotations.release()  # on to an API server that is gone: the connection is cut
            time.sleep(12)  # down for longer than one call's retry budget
            # Started again; like behind a load balancer, nothing reaches it before /readyz says so
            # (a starting API server refuses requests with 403 until its authoriser has synced).
            with proxy.down():
                apiserver.start()
                apiserver.wait_ready(cluster)
        scaled_up_once(world, "chat", 3, op)
    applied = [r for r in scale_patches(proxy, namespace, "chat") if r.forwarded and r.status == 200]
    assert len(applied) == 1, [(r.status, r.forwarded) for r in scale_patches(proxy, namespace, "chat")]
    assert not wrong_verdicts(cluster, namespace)


def test_a_conflicting_taint_change_mid_drain_is_kept_and_the_drain_still_completes(
    cluster: Cluster, namespace: str, fleet: Fleet, proxy: ApiProxy
) -> None:
    keep, drain = fleet.add_nodes("a100", A100_80GB_X8, 2)
    protected = {"rightsizer.io/do-not-disrupt": "true"}
    cluster.apply(gpu_app(fleet, "anchor", "a100", 4, node=keep, annotations=protected), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 1, timeout=60)
    cluster.apply(gpu_app(fleet, "mover", "a100", 1), namespace)  # spread away from the anchor
    wait_for(
        lambda: (
            sorted(node for _, node in running_pods(cluster, namespace).values()) == sorted([keep, drain])
        ),
        timeout=90,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    core = client.CoreV1Api(cluster.api)
    # Hold our taint patch; meanwhile someone else taints the node (straight to the API server).
    taint = proxy.delay("PATCH", rf"^/api/v1/nodes/{drain}$", 60, body='"taints"')
    with operator(cluster, namespace, proxy, *operator_args(fleet)) as op:
        taint.wait(timeout=90)
        taints = [
            {"key": t.key, "value": t.value, "effect": t.effect} for t in core.read_node(drain).spec.taints
        ]
        core.patch_node(drain, {"spec": {"taints": [*taints, FOREIGN_TAINT]}})
        taint.release()
        wait_for(
            lambda: len(fleet.nodes("a100")) == 1,
            timeout=120,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{op.log()[-3000:]}",
        )
        wait_for(lambda: all_available(cluster, namespace), timeout=60)
    sent = proxy.requests("PATCH", rf"^/api/v1/nodes/{drain}$")
    taint_patches = [r for r in sent if b'"taints"' in r.body]
    assert [r.status for r in taint_patches][:2] == [409, 200], [(r.status, r.body) for r in taint_patches]
    # Every taint patch after the conflict (the planned-removal mark, then the drain's taint) is
    # computed on top of the other writer's taint, never over it.
    kept = [{t["key"] for t in json.loads(r.body)["spec"]["taints"]} for r in taint_patches[1:]]
    assert all(FOREIGN_TAINT["key"] in keys for keys in kept), kept
    assert any(DISRUPTED in keys for keys in kept), kept
    assert [n.metadata.name for n in fleet.nodes("a100")] == [keep]
    assert {node for _, node in running_pods(cluster, namespace).values()} == {keep}
    # The drain went through at its first attempt: no rollback, no recovery.
    undone = [
        e.message
        for reason in ("DrainRolledBack", "DrainRecovered", "DrainBlocked")
        for e in events(cluster, "default", reason)
        if drain in (e.message or "")
    ]
    assert not undone, undone


def test_kopf_keeps_to_a_bounded_pool_of_connections_when_every_workload_is_due_at_once(
    cluster: Cluster, namespace: str, world: World, proxy: ApiProxy
) -> None:
    # Every GPUWorkload exists before the operator starts, so all are due in its first second and
    # kopf writes all their statuses at once. Unbounded, kopf opened a connection per write (each TLS
    # connection holds a 256 KiB buffer: ~650 of them at 1,000 workloads).
    count = 40
    for i in range(count):
        world.cluster.apply(gpu_workload(f"w{i:02d}", f"missing-{i:02d}"), namespace)
    requests = 2
    limit = connection_limit(Settings(api_connections=requests))  # plus a cluster-wide operator's watches
    with operator(cluster, namespace, proxy, "--api-connections", str(requests)) as op:
        wait_for(
            lambda: all(
                (world.workload(f"w{i:02d}").get("status") or {}).get("observedGeneration") == 1
                for i in range(count)
            ),
            timeout=120,
            describe=lambda: op.log()[-3000:],
        )
    assert 1 <= proxy.peak_connections("kopf") <= limit, proxy.peak_connections("kopf")
