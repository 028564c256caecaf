"""Consolidation rules, one behaviour per test, through the planner's public entry point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rightsizer.core.planner import Plan, PlanInput, PlannerOptions, plan
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import A100, L4, cpu_node, gpu_node, gpu_pool, kube_list, pdb, pod, policies

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def pools(**overrides: Any) -> list[dict[str, Any]]:
    """a100 / l4 / cpu pools that allow every node to be disrupted, unless overridden."""
    spec: dict[str, Any] = {"disruption": {"budgets": [{"nodes": "100%"}]}}
    spec.update(overrides)
    return [
        gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **spec),
        gpu_pool("l4", selector={"rightsizer.io/pool": "l4"}, price_per_gpu_hour="0.80", **spec),
        gpu_pool(
            "cpu",
            selector={"rightsizer.io/pool": "cpu"},
            price_per_gpu_hour=None,
            gpusPerNode=0,
            pricePerNodeHour="1.28",
            **spec,
        ),
    ]


def run(*items: dict[str, Any], pool_docs: list[dict[str, Any]] | None = None, **inputs: Any) -> Plan:
    snapshot = snapshot_from_document(kube_list(*items))
    documents = pools() if pool_docs is None else pool_docs
    return plan(PlanInput(snapshot=snapshot, now=inputs.pop("now", NOW), pools=policies(documents), **inputs))


def removed(result: Plan) -> list[str]:
    return [a.node for a in result.actions if a.type == "removeNode"]


def moves(result: Plan) -> dict[str, str | None]:
    return {a.pod or "": a.to_node for a in result.actions if a.type == "evict"}


def reason(result: Plan, node: str) -> str:
    return next(s.reason for s in result.skipped if s.node == node and s.pod is None)


def test_empty_node_is_removed_first() -> None:
    result = run(
        gpu_node("a1"), gpu_node("a2"), pod("w-1", "a1", gpus=2), pod("ds-a2", "a2", owner="DaemonSet")
    )
    assert [a.type for a in result.actions] == ["cordon", "removeNode"]
    assert removed(result) == ["a2"]
    assert "empty" in result.actions[0].reason


def test_underutilised_node_is_drained_onto_the_fullest_node() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=6),
        pod("w-2", "a2", gpus=4),
        pod("w-3", "a3", gpus=2),
    )
    assert removed(result) == ["a3"]
    assert moves(result) == {"default/w-3": "a1"}
    assert [a.type for a in result.actions] == ["cordon", "evict", "removeNode"]
    assert result.summary.gpu_nodes_after == 2


def test_pdb_at_limit_pod_never_evicted() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("web-1", "a2", gpus=1, labels={"app": "web"}),
        pdb("web", {"app": "web"}, 0),
    )
    assert removed(result) == ["a1"]  # the empty node goes; the protected pod's node stays
    assert "default/web-1" not in moves(result)
    assert "PDB default/web allows no disruption" in reason(result, "a2")
    assert any(s.pod == "default/web-1" for s in result.skipped)


def test_pdb_allows_its_disruptions_again_on_every_node_of_the_plan() -> None:
    """The executor drains one node at a time and ends a drain once the replacements are available:
    the next node finds the PDB whole again, so each node's pods are counted on their own."""
    result = run(
        cpu_node("c1"),
        cpu_node("c2"),
        cpu_node("c3"),
        cpu_node("big", cpu="64", memory="256Gi", labels={"rightsizer.io/pool": "cpu"}),
        pod("web-1", "c1", labels={"app": "web"}),
        pod("web-2", "c2", labels={"app": "web"}),
        pod("web-3", "c3", labels={"app": "web"}),
        pod("filler", "big", cpu="40"),
        pdb("web", {"app": "web"}, 1),
    )
    assert sorted(removed(result)) == ["c1", "c2", "c3"]
    assert moves(result) == {"default/web-1": "big", "default/web-2": "big", "default/web-3": "big"}
    assert not any("PDB" in s.reason for s in result.skipped)


@pytest.mark.parametrize(
    ("allowed", "web_2_on", "kept", "why"),
    [
        (1, "a3", [], None),  # one pod per node: each drain needs one disruption
        (1, "a2", ["a2"], "PDB default/web allows 1 disruption(s) at a time; this node's pods need 2"),
        (2, "a2", [], None),
        (0, "a3", ["a2", "a3"], "PDB default/web allows no disruption (disruptionsAllowed=0)"),
    ],
)
def test_pdb_limits_the_pods_one_node_evicts(
    allowed: int, web_2_on: str, kept: list[str], why: str | None
) -> None:
    """Two pods of one PDB, on two nodes or together on one; a1 has room for both."""
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=6),
        pod("web-1", "a2", gpus=1, labels={"app": "web"}),
        pod("web-2", web_2_on, gpus=1, labels={"app": "web"}),
        pdb("web", {"app": "web"}, allowed),
    )
    assert sorted({"a2", web_2_on} - set(removed(result))) == kept
    web = {"default/web-1", "default/web-2"}
    if why is None:
        assert web <= set(moves(result))
        return
    assert not web & set(moves(result))
    assert why in reason(result, "a2")
    assert any(s.node == "a2" and s.pod == "default/web-1" and why in s.reason for s in result.skipped)


def test_pod_under_several_pdbs_still_blocks_its_node() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=6),
        pod("web-1", "a2", gpus=1, labels={"app": "web", "tier": "front"}),
        pdb("web", {"app": "web"}, 5),
        pdb("front", {"tier": "front"}, 5),
    )
    assert "a2" not in removed(result)
    assert "default/web-1" not in moves(result)
    assert "matched by several PDBs (default/front, default/web)" in reason(result, "a2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"owner": None},
        {"annotations": {"rightsizer.io/do-not-disrupt": "true"}},
        {"annotations": {"karpenter.sh/do-not-disrupt": "true"}},
        {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
        {"labels": {"rightsizer.io/workload-type": "Training"}},
        {"volumes": [{"name": "scratch", "emptyDir": {}}]},
    ],
)
def test_bare_pod_blocks_node(kwargs: dict[str, Any]) -> None:
    """Any unmovable pod keeps its node, and no pod of that node is evicted."""
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=4),
        pod("stuck-1", "a2", gpus=1, **kwargs),
        pod("other-1", "a2", gpus=1),
    )
    assert "a2" not in removed(result)
    assert not {"default/stuck-1", "default/other-1"} & set(moves(result))
    # The node kept anyway takes the other node's pods.
    assert moves(result) == {"default/w-1": "a2"}
    assert "default/stuck-1 cannot move" in reason(result, "a2")


def test_daemonset_pods_do_not_block() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=4),
        pod("w-2", "a2", gpus=1),
        pod("dcgm-a2", "a2", owner="DaemonSet"),
        pod("static-a2", "a2", owner=None, annotations={"kubernetes.io/config.mirror": "x"}),
    )
    assert removed(result) == ["a2"]
    assert moves(result) == {"default/w-2": "a1"}  # DaemonSet and static pods go with the node


def test_budget_of_one_node_at_a_time() -> None:
    nodes = [gpu_node(f"a{i}") for i in range(6)]
    workloads = [pod(f"w-{i}", f"a{i}", gpus=1) for i in range(6)]
    result = run(*nodes, *workloads, pool_docs=pools(disruption={"budgets": [{"nodes": "1"}]}))
    assert len(removed(result)) == 1
    assert sum("disruption budget of pool a100 allows 1" in s.reason for s in result.skipped) == 5


def test_a_budget_limits_only_the_disruptions_its_reasons_name() -> None:
    """Karpenter's budget reasons: no drain at all, while empty nodes still go."""
    nodes = [gpu_node("a1"), gpu_node("a2"), gpu_node("a3")]
    workloads = [pod("w-1", "a1", gpus=6), pod("w-2", "a2", gpus=1)]
    no_drains = {"budgets": [{"nodes": "0", "reasons": ["Underutilized"]}, {"nodes": "100%"}]}
    result = run(*nodes, *workloads, pool_docs=pools(disruption=no_drains))
    assert removed(result) == ["a3"] and moves(result) == {}
    no_removals = {"budgets": [{"nodes": "0", "reasons": ["Empty"]}, {"nodes": "100%"}]}
    result = run(*nodes, *workloads, pool_docs=pools(disruption=no_removals))
    assert "a3" not in removed(result), "the empty node stays"
    assert moves(result) and set(removed(result)) == {"a1", "a2"}, "both drained into it instead"


def test_default_budget_is_ten_percent_rounded_up() -> None:
    nodes = [gpu_node(f"a{i:02d}") for i in range(12)]
    result = run(*nodes, pool_docs=[gpu_pool("a100", selector={"rightsizer.io/pool": "a100"})])
    assert len(removed(result)) == 2  # ceil(12 * 10%)


@pytest.mark.parametrize(
    ("taint", "why"),
    [
        ({"key": "rightsizer.io/disrupted", "effect": "NoSchedule"}, "already being disrupted"),
        ({"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}, "Karpenter is disrupting"),
        ({"key": "karpenter.sh/unregistered", "effect": "NoExecute"}, "not registered with Karpenter"),
    ],
)
def test_nodes_already_disrupting_count_against_the_budget(taint: dict[str, str], why: str) -> None:
    tainted = gpu_node("a0", taints=[taint])
    result = run(
        tainted, gpu_node("a1"), gpu_node("a2"), pool_docs=pools(disruption={"budgets": [{"nodes": "2"}]})
    )
    assert len(removed(result)) == 1
    assert why in reason(result, "a0")


def test_a_node_karpenter_is_disrupting_receives_no_moved_pod() -> None:
    # a1's pod would fit beside a0's, but Karpenter is draining a0: the pod has nowhere to go.
    pods = (pod("w-0", "a0", gpus=4), pod("w-1", "a1", gpus=4))
    draining = gpu_node("a0", taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}])
    assert removed(run(draining, gpu_node("a1"), *pods, pool_docs=pools())) == []
    assert len(removed(run(gpu_node("a0"), gpu_node("a1"), *pods, pool_docs=pools()))) == 1


@pytest.mark.parametrize(
    ("now", "removed_count"),
    [
        (NOW, 0),  # Monday 10:00: inside the business-hours freeze
        (NOW.replace(hour=20), 3),  # after the window: the scheduled budget does not apply
        (NOW + timedelta(days=5), 3),  # Saturday
    ],
)
def test_cron_window_freezes_disruption(now: datetime, removed_count: int) -> None:
    freeze = {"disruption": {"budgets": [{"nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h"}]}}
    result = run(gpu_node("a1"), gpu_node("a2"), gpu_node("a3"), pool_docs=pools(**freeze), now=now)
    assert len(removed(result)) == removed_count


def test_cpu_pod_moved_off_gpu_node() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        cpu_node("c1"),
        pod("w-1", "a1", gpus=4),
        pod("web-1", "a2", cpu="2"),
        pod("web-2", "c1", cpu="2"),
    )
    assert removed(result) == ["a2"]
    assert moves(result) == {"default/web-1": "c1"}


def test_cpu_pods_from_cpu_nodes_never_land_on_gpu_nodes() -> None:
    result = run(
        gpu_node("a1"),
        cpu_node("c1", cpu="4"),
        cpu_node("c2", cpu="4"),
        pod("w-1", "a1", gpus=4),
        pod("web-1", "c1", cpu="3"),
        pod("web-2", "c2", cpu="3"),
    )
    assert not result.actions
    assert "fits on no remaining node without a GPU" in reason(result, "c1")
    relaxed = run(
        gpu_node("a1"),
        cpu_node("c1", cpu="4"),
        cpu_node("c2", cpu="4"),
        pod("w-1", "a1", gpus=4),
        pod("web-1", "c1", cpu="3"),
        pod("web-2", "c2", cpu="3"),
        options=PlannerOptions(cpu_pods_on_gpu_nodes=True),
    )
    assert set(moves(relaxed).values()) == {"a1"}


def test_gpu_node_held_by_cpu_pods_gets_a_recommendation() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        cpu_node("c1", cpu="2"),
        pod("w-1", "a1", gpus=8, cpu="64"),
        pod("web-1", "a2", cpu="2"),
        pod("web-2", "c1", cpu="2"),
    )
    assert not result.actions
    assert [r.node for r in result.recommendations] == ["a2"]
    assert "CPU" in result.recommendations[0].message


def test_gpu_pods_keep_their_gpu_model() -> None:
    items = (
        gpu_node("a1"),
        gpu_node("l1", gpus=4, model=L4),
        pod("w-1", "a1", gpus=1),
        pod("w-2", "l1", gpus=1),
    )
    assert not moves(run(*items))
    assert moves(run(*items, options=PlannerOptions(keep_gpu_model=False))) == {"default/w-1": "l1"}


def test_taints_and_affinity_respected() -> None:
    taint = [{"key": "dedicated", "value": "infer", "effect": "NoSchedule"}]
    result = run(
        gpu_node("a1", taints=taint),
        gpu_node("a2", labels={"zone": "b"}),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=6),
        pod("w-2", "a2", gpus=4),
        pod("w-3", "a3", gpus=1, node_selector={"zone": "b"}),
    )
    # a1 is fullest but tainted; a2 is the only node in zone b.
    assert moves(result) == {"default/w-3": "a2"}


def test_pvc_pods_stay_in_their_zone() -> None:
    claim = [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
    result = run(
        gpu_node("a1", labels={"topology.kubernetes.io/zone": "zone-b"}),
        gpu_node("a2", labels={"topology.kubernetes.io/zone": "zone-a"}),
        gpu_node("a3", labels={"topology.kubernetes.io/zone": "zone-a"}),
        pod("w-1", "a1", gpus=6),
        pod("w-2", "a2", gpus=4),
        pod("w-3", "a3", gpus=1, volumes=claim),
    )
    assert moves(result) == {"default/w-3": "a2"}


def test_min_nodes_kept() -> None:
    result = run(gpu_node("a1"), gpu_node("a2"), gpu_node("a3"), pool_docs=pools(minNodes=2))
    assert len(removed(result)) == 1
    assert sum("keeps minNodes=2" in s.reason for s in result.skipped) == 2


def test_when_empty_policy() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=4),
        pod("w-2", "a2", gpus=1),
        pool_docs=pools(consolidationPolicy="WhenEmpty"),
    )
    assert removed(result) == ["a3"]
    assert "WhenEmpty" in reason(result, "a2")


def test_consolidate_after_waits_for_quiet_nodes() -> None:
    items = (
        gpu_node("a1"),
        gpu_node("a2", created="2026-03-02T09:55:00Z"),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=4, owner=None),
        pod("w-3", "a3", gpus=1, created="2026-03-02T09:58:00Z"),
    )
    # No startup shield here: w-3 started 2 minutes ago and would be shielded for 10.
    quiet = pools(consolidateAfter="10m", startupGracePeriod="0s")
    result = run(*items, pool_docs=quiet)
    assert not result.actions
    assert "consolidateAfter 10m not reached (5m left)" in reason(result, "a2")
    assert "(8m left)" in reason(result, "a3")
    later = run(*items, pool_docs=quiet, now=NOW + timedelta(minutes=10))
    assert sorted(removed(later)) == ["a2", "a3"]
    told = run(
        *items, pool_docs=pools(consolidateAfter="10m"), candidate_since={"a2": NOW - timedelta(hours=1)}
    )
    assert removed(told) == ["a2"]


def test_replacement_by_cheaper_type() -> None:
    replacement = [
        {
            "instanceType": "a100-x2",
            "gpuModel": "NVIDIA-A100-SXM4-80GB",
            "gpusPerNode": 2,
            "pricePerNodeHour": "6.50",
        },
        {
            "instanceType": "a100-x1",
            "gpuModel": "NVIDIA-A100-SXM4-80GB",
            "gpusPerNode": 1,
            "pricePerNodeHour": "3.20",
        },
    ]
    result = run(
        gpu_node("a1", labels={"node.kubernetes.io/instance-type": "a100-x8"}),
        pod("w-1", "a1", gpus=2, cpu="8", memory="64Gi"),
        pod("ds-a1", "a1", owner="DaemonSet", cpu="100m", memory="128Mi"),
        pool_docs=pools(replacementTypes=replacement),
    )
    assert [a.type for a in result.actions] == ["replaceNode", "cordon", "evict", "removeNode"]
    assert result.actions[0].instance_type == "a100-x2"
    replace_node = result.to_dict()["actions"][0]
    assert isinstance(replace_node, dict)
    assert replace_node["toNode"] == "a1-replacement" and replace_node["pricePerHour"] == 6.5
    assert moves(result) == {"default/w-1": "a1-replacement"}
    assert result.summary.nodes_after == 1
    assert result.summary.cost_per_hour_before == Decimal("24.00")
    assert result.summary.cost_per_hour_after == Decimal("6.50")


def test_replacement_needs_room_for_requests() -> None:
    # The shape's CPU is the node's scaled by the GPU ratio: 64 cores x 2/8 = 16, less than the pod asks.
    replacement = [
        {"instanceType": "a100-x2", "gpuModel": A100, "gpusPerNode": 2, "pricePerNodeHour": "6.50"}
    ]
    result = run(
        gpu_node("a1"),
        pod("w-1", "a1", gpus=2, cpu="17"),
        pool_docs=pools(replacementTypes=replacement),
    )
    assert not result.actions
    fits = run(
        gpu_node("a1"), pod("w-1", "a1", gpus=2, cpu="16"), pool_docs=pools(replacementTypes=replacement)
    )
    assert fits.actions[0].type == "replaceNode"


def test_replacement_respects_max_nodes() -> None:
    replacement = [
        {"instanceType": "a100-x2", "gpuModel": A100, "gpusPerNode": 2, "pricePerNodeHour": "6.50"}
    ]
    result = run(
        gpu_node("a1"),
        pod("w-1", "a1", gpus=2),
        pool_docs=pools(replacementTypes=replacement, maxNodes=1),
    )
    assert not result.actions
    assert "maxNodes=1" in reason(result, "a1")


def test_pending_pods_keep_the_capacity_they_need() -> None:
    result = run(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=2),
        pod("w-2", "a2", gpus=2),
        pod("waiting-1", None, gpus=6, phase="Pending"),
        pod("hopeless-1", None, gpus=16, phase="Pending"),
    )
    assert not result.actions
    assert result.summary.pods_unplaceable == 1
    assert any(s.pod == "default/hopeless-1" and "needs new capacity" in s.reason for s in result.skipped)


def test_a_pod_moved_twice_is_named_once_with_its_final_node() -> None:
    result = run(
        cpu_node("c1", cpu="10"),
        cpu_node("c2", cpu="10"),
        cpu_node("c3", cpu="10"),
        pod("web-1", "c1", cpu="1"),
        pod("web-2", "c2", cpu="2"),
        pod("web-3", "c3", cpu="6"),
    )
    assert sorted(removed(result)) == ["c1", "c2"]
    assert moves(result) == {"default/web-1": "c3", "default/web-2": "c3"}


def test_anti_affinity_keeps_replicas_apart() -> None:
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }
    result = run(
        cpu_node("c1"),
        cpu_node("c2"),
        pod("web-1", "c1", labels={"app": "web"}, affinity=anti),
        pod("web-2", "c2", labels={"app": "web"}, affinity=anti),
    )
    assert not result.actions


def test_idle_gpu_node_recommendation() -> None:
    items = (
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=8),
        pod("train-1", "a2", gpus=4, labels={"rightsizer.io/workload-type": "Training"}),
    )
    result = run(*items, gpu_activity={"default/train-1": Decimal("0.5")})
    assert not result.actions
    assert result.recommendations[0].node == "a2"
    assert "idle" in result.recommendations[0].message
    assert result.recommendations[0].savings_per_hour == Decimal("24.00")


def test_pool_can_allow_training_disruption() -> None:
    items = (
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=4),
        pod("train-1", "a2", gpus=2, labels={"rightsizer.io/workload-type": "Training"}),
    )
    assert removed(run(*items, pool_docs=pools(allowTrainingDisruption=True))) == ["a2"]


def test_idle_nodes_are_drained_first() -> None:
    items = (
        gpu_node("a1"),
        gpu_node("a2"),
        gpu_node("a3"),
        pod("w-1", "a1", gpus=4),
        pod("w-2", "a2", gpus=2),
        pod("w-3", "a3", gpus=3),
    )
    by_utilisation = run(*items, pool_docs=pools(disruption={"budgets": [{"nodes": "1"}]}))
    assert removed(by_utilisation) == ["a2"]
    by_activity = run(
        *items,
        pool_docs=pools(disruption={"budgets": [{"nodes": "1"}]}),
        gpu_activity={"default/w-3": Decimal(0), "default/w-2": Decimal(90)},
    )
    assert removed(by_activity) == ["a3"]


def test_nodes_outside_pools_and_cordoned_nodes_are_not_candidates() -> None:
    not_ready = gpu_node("a4")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    result = run(
        gpu_node("a1", labels={"rightsizer.io/pool": "other"}),
        gpu_node("a2", unschedulable=True),
        gpu_node("a3"),
        not_ready,
        pod("w-3", "a3", gpus=1),
    )
    assert removed(result) == ["a3"]
    assert moves(result) == {"default/w-3": "a1"}  # nodes outside pools still take pods
    assert "matches no GPUNodePool" in reason(result, "a1")
    assert "cordoned" in reason(result, "a2")
    assert "NotReady" in reason(result, "a4")
