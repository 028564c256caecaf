"""What users protect stays put, on the real API server and scheduler: a GPUWorkload's protection holds
for a pod created a moment ago, GPUWorkloads that cannot be read mean hold, the startup shield and
gangs. Negative checks wait for consolidation passes (rightsizer_pool_passes_total), never sleep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from rightsizer.cli.main import main
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
from tests.support.operator_process import OperatorProcess, pool_passes, wait_passes
from tests.support.world import gpu_workload

pytestmark = pytest.mark.e2e

# The workload loop watches a namespace without GPUWorkloads, so it never annotates the test's pods:
# only the consolidation pass (which lists GPUWorkloads cluster-wide) can know whom they belong to.
# kopf then looks namespaces up, which the cluster-wide chart does not grant: an expected refusal.
NO_WORKLOAD_LOOP = ("--namespace", "kube-public")
NAMESPACES_REFUSED = 'cannot list resource "namespaces"'
GPUWORKLOAD_LIST = r"^/apis/rightsizer\.io/v1alpha1/gpuworkloads$"  # cluster-wide: only consolidation


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiProxy]:
    with operator_proxy(cluster, tmp_path) as running:
        yield running


def spread_apps(
    cluster: Cluster, fleet: Fleet, namespace: str, apps: list[tuple[str, int]], **labels: str
) -> dict[str, tuple[str, str]]:
    """Deployments of one pod each, placed in order: the scheduler's spreading preference puts each on
    the emptiest node. Returns the running pods."""
    for name, gpus in apps:
        app = gpu_app(fleet, name, "a100", gpus)
        app["spec"]["template"]["metadata"]["labels"].update(labels)
        cluster.apply(app, namespace)
        wait_for(
            lambda n=name: any(p.startswith(f"{n}-") for p in running_pods(cluster, namespace)), timeout=60
        )
    return running_pods(cluster, namespace)


def two_busy_nodes(namespace: str, fleet: Fleet, gpu_util: GpuUtilization) -> None:
    gpu_util.set(namespace, 50)  # every GPU pod busy: only requests and protection decide
    fleet.add_nodes("a100", A100_80GB_X8, 2)


def wait_for_one_node(cluster: Cluster, namespace: str, fleet: Fleet, operator: OperatorProcess) -> None:
    """The pool consolidated to one node and every Deployment is available again."""
    wait_for(
        lambda: len(fleet.nodes("a100")) == 1 and all_available(cluster, namespace),
        timeout=180,
        interval=2,
        describe=lambda: f"{deployments_summary(cluster, namespace)}\n{operator.log()[-3000:]}",
    )


def inputs_condition(fleet: Fleet, kind: str) -> dict[str, Any]:
    conditions = fleet.status(kind).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "InputsAvailable"), {})


def test_a_new_pod_of_a_do_not_disrupt_workload_is_never_evicted(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    two_busy_nodes(namespace, fleet, gpu_util)
    # guarded holds 1 GPU on one node, filler 2 on the other: guarded's node is the emptier one, the
    # first the planner would drain.
    before = spread_apps(cluster, fleet, namespace, [("guarded", 1), ("filler", 2)])
    guarded = {name: where for name, where in before.items() if name.startswith("guarded-")}
    assert len({node for _, node in before.values()}) == 2, deployments_summary(cluster, namespace)
    cluster.apply(gpu_workload("guarded", "guarded", protection={"doNotDisrupt": True}), namespace)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=(*operator_args(fleet), *NO_WORKLOAD_LOOP),
        refusals_expected=NAMESPACES_REFUSED,
    ) as operator:
        # filler's node is drained instead: filler joins guarded, and the pool is one node.
        wait_for_one_node(cluster, namespace, fleet, operator)
    after = running_pods(cluster, namespace)
    for name, where in guarded.items():
        assert after.get(name) == where, f"protected pod {name} was evicted or moved"
        annotations = client.CoreV1Api(cluster.api).read_namespaced_pod(name, namespace).metadata.annotations
        assert "rightsizer.io/workload" not in (annotations or {}), "the workload loop saw the pod"


def test_gpuworkloads_that_cannot_be_listed_mean_no_drain_and_a_condition(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    two_busy_nodes(namespace, fleet, gpu_util)
    before = spread_apps(cluster, fleet, namespace, [("small", 1), ("filler", 2)])
    pool = fleet.pool("a100")
    proxy.fail("GET", GPUWORKLOAD_LIST, 403, times=None)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=(*operator_args(fleet), *NO_WORKLOAD_LOOP),
        identity=proxy.kubeconfig,
        cluster_wide=True,
        refusals_expected=f"GPUWorkloads \\(HTTP 403 Forbidden\\)|{NAMESPACES_REFUSED}",
    ) as operator:
        # kopf spends up to two minutes on the namespace lookup it may not make before timers start.
        wait_for(
            lambda: inputs_condition(fleet, "a100").get("status") == "False",
            timeout=240,
            describe=lambda: (
                f"{fleet.status('a100')} {pool_passes(operator, pool)}\n{operator.log()[-3000:]}"
            ),
        )
        held = inputs_condition(fleet, "a100")
        assert held["reason"] == "InputsUnreadable"
        assert "GPUWorkloads (HTTP 403 Forbidden)" in held["message"]
        wait_passes(operator, pool, 5)
        assert running_pods(cluster, namespace) == before, "a pod was evicted while GPUWorkloads were unknown"
        assert len(fleet.nodes("a100")) == 2
        reasons = {
            e.reason
            for e in client.CoreV1Api(cluster.api)
            .list_event_for_all_namespaces(field_selector=f"involvedObject.name={pool}")
            .items
        }
        assert "InputsUnreadable" in reasons

        proxy.clear()  # readable again: the pool consolidates
        wait_for_one_node(cluster, namespace, fleet, operator)
        wait_for(lambda: inputs_condition(fleet, "a100").get("status") == "True", timeout=30)


def test_pods_in_their_startup_grace_period_are_not_moved_until_it_ends(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    two_busy_nodes(namespace, fleet, gpu_util)
    before = spread_apps(cluster, fleet, namespace, [("fresh", 1), ("filler", 2)])
    assert len({node for _, node in before.values()}) == 2
    pool = fleet.pool("a100")
    fleet.node_pool("a100", A100_80GB_X8, 3.0, startupGracePeriod="10m")
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as operator:
        wait_passes(operator, pool, 5)
        assert running_pods(cluster, namespace) == before, "a pod in its startup grace period was evicted"
        assert len(fleet.nodes("a100")) == 2
        fleet.node_pool("a100", A100_80GB_X8, 3.0, startupGracePeriod="0s")  # the period is over
        wait_for_one_node(cluster, namespace, fleet, operator)


def test_a_gang_of_four_over_two_nodes_is_never_split(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    two_busy_nodes(namespace, fleet, gpu_util)
    # Four 1-GPU pods of one JobSet, two on each 8-GPU node: on requests, one node would do.
    gang = {"jobset.sigs.k8s.io/jobset-name": "run-7"}
    before = spread_apps(cluster, fleet, namespace, [(f"gang-{i}", 1) for i in range(4)], **gang)
    assert len({node for _, node in before.values()}) == 2
    pool = fleet.pool("a100")
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as operator:
        wait_passes(operator, pool, 6)
        assert running_pods(cluster, namespace) == before, "a gang pod was evicted"
        assert len(fleet.nodes("a100")) == 2


def test_a_pdb_refusal_in_the_middle_of_a_drain_rolls_it_back(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    gpu_util.set(namespace, 50)
    drained, kept = fleet.pool("a100") + "-0", fleet.pool("a100") + "-1"
    fleet.add_node(drained, A100_80GB_X8, fleet.pool("a100"))
    wait_for(lambda: fleet.ready(drained), timeout=60)
    before = spread_apps(cluster, fleet, namespace, [("one", 1), ("two", 1)])
    fleet.add_node(kept, A100_80GB_X8, fleet.pool("a100"))
    wait_for(lambda: fleet.ready(kept), timeout=60)
    cluster.apply(gpu_app(fleet, "filler", "a100", 3, node=kept), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 3, timeout=60)
    assert {node for _, node in before.values()} == {drained}
    two = next(name for name in before if name.startswith("two-"))
    # The drain evicts one-…, then two-…: hold the second eviction while a PDB starts guarding two.
    held = proxy.delay("POST", rf"/pods/{two}/eviction$", seconds=120)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    policy = client.PolicyV1Api(cluster.api)
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=operator_args(fleet),
        identity=proxy.kubeconfig,
        cluster_wide=True,
    ) as operator:
        held.wait(timeout=120)
        cluster.apply(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "two"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "two"}}},
            },
            namespace,
        )
        wait_for(
            lambda: (
                (policy.read_namespaced_pod_disruption_budget("two", namespace).status or {})
                and policy.read_namespaced_pod_disruption_budget("two", namespace).status.current_healthy == 1
            ),
            timeout=60,
        )
        held.release()  # the real Eviction API now refuses: 429, the budget allows no disruption
        wait_for(
            lambda: drained not in fleet.tainted() and "DrainBlocked" in node_events(cluster, drained),
            timeout=60,
            describe=operator.log,
        )
    assert running_pods(cluster, namespace).get(two) == before[two], "the guarded pod was evicted"
    assert drained in {n.metadata.name for n in fleet.nodes("a100")}


def node_events(cluster: Cluster, node: str) -> set[str]:
    events = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(
        field_selector=f"involvedObject.name={node}"
    )
    return {e.reason for e in events.items}


CHECKPOINT = {"rightsizer.io/checkpoint-before-evict": "true"}


def checkpoint_fleet(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> tuple[str, dict[str, tuple[str, str]]]:
    """trainer (1 GPU, asks for a checkpoint) on the emptier node, filler (2 GPUs, do-not-disrupt) on
    the other: only trainer's node can be drained."""
    two_busy_nodes(namespace, fleet, gpu_util)
    for name, gpus, marks in (
        ("trainer", 1, CHECKPOINT),
        ("filler", 2, {"rightsizer.io/do-not-disrupt": "true"}),
    ):
        cluster.apply(gpu_app(fleet, name, "a100", gpus, annotations=marks), namespace)
        wait_for(
            lambda n=name: any(p.startswith(f"{n}-") for p in running_pods(cluster, namespace)), timeout=60
        )
    before = running_pods(cluster, namespace)
    assert len({node for _, node in before.values()}) == 2, deployments_summary(cluster, namespace)
    return next(name for name in before if name.startswith("trainer-")), before


def test_a_pod_that_asks_for_a_checkpoint_is_evicted_once_it_answers(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    trainer, _ = checkpoint_fleet(cluster, namespace, fleet, gpu_util)
    core = client.CoreV1Api(cluster.api)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as operator:
        # Playing the training job: it sees the request, writes its checkpoint, and says so.
        wait_for(
            lambda: (
                "rightsizer.io/evict-requested"
                in (core.read_namespaced_pod(trainer, namespace).metadata.annotations or {})
            ),
            timeout=120,
            describe=operator.log,
        )
        assert trainer in running_pods(cluster, namespace), "evicted before it answered"
        core.patch_namespaced_pod(
            trainer, namespace, {"metadata": {"annotations": {"rightsizer.io/checkpoint-done": "step-1200"}}}
        )
        wait_for_one_node(cluster, namespace, fleet, operator)
    assert trainer not in running_pods(cluster, namespace)


def test_a_pod_that_never_answers_the_checkpoint_request_is_never_evicted(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    trainer, before = checkpoint_fleet(cluster, namespace, fleet, gpu_util)
    node = before[trainer][1]
    fleet.node_pool("a100", A100_80GB_X8, 3.0, checkpointTimeout="5s")
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=operator_args(fleet)
    ) as operator:
        wait_for(
            lambda: "CheckpointTimedOut" in node_events(cluster, node), timeout=120, describe=operator.log
        )
        wait_passes(operator, fleet.pool("a100"), 3)
        assert running_pods(cluster, namespace) == before, "a pod was evicted without its checkpoint"
        assert node not in fleet.tainted()


def test_plan_live_reads_the_cluster_as_the_operator_does(
    cluster: Cluster,
    namespace: str,
    fleet: Fleet,
    gpu_util: GpuUtilization,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_busy_nodes(namespace, fleet, gpu_util)
    before = spread_apps(cluster, fleet, namespace, [("guarded", 1), ("filler", 2)])
    nodes = {name.split("-")[0]: node for name, (_, node) in before.items()}
    assert len(set(nodes.values())) == 2, deployments_summary(cluster, namespace)
    cluster.apply(gpu_workload("guarded", "guarded", protection={"doNotDisrupt": True}), namespace)
    fleet.node_pool("a100", A100_80GB_X8, 3.0)

    # No operator runs: only the plan reads the GPUWorkload, its pool and its prices.
    assert main(["plan", "--live", "--kubeconfig", cluster.kubeconfig, "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    removed = {action["node"] for action in plan["actions"]}
    assert nodes["filler"] in removed, plan["actions"]
    assert nodes["guarded"] not in removed
    reasons = [s["reason"] for s in plan["skipped"] if s["node"] == nodes["guarded"]]
    assert any(f"protected by its GPUWorkload {namespace}/guarded" in r for r in reasons), plan["skipped"]
