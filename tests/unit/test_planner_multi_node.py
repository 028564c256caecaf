"""Multi-node consolidation: the nodes that stay are chosen for the whole pool, the others emptied
into them, where one node at a time would strand pods on nodes it should have emptied."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rightsizer.core.keep_set import choose_keep_set
from rightsizer.core.planner import Plan, PlanInput, plan
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.mapping import read_pools
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list, pdb, pod

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _plan(*extra: dict[str, Any], annotations: dict[str, str] | None = None) -> Plan:
    """One 8-GPU node holding a 1-GPU pod and three 2-GPU nodes holding one 1-GPU pod each.

    Single-node consolidation drains the emptiest node first: the big node's pod goes to the fullest
    small node that fits, then a small node's pod to another small one: two small nodes stay. Keeping
    the big node and emptying the three small ones into it leaves one node."""
    snapshot = snapshot_from_document(
        kube_list(
            gpu_node("big", gpus=8),
            gpu_node("s1", gpus=2),
            gpu_node("s2", gpus=2),
            gpu_node("s3", gpus=2),
            pod("w-big", "big", gpus=1),
            pod("w-s1", "s1", gpus=1, labels={"app": "api"}),
            pod("w-s2", "s2", gpus=1, labels={"app": "api"}),
            pod("w-s3", "s3", gpus=1, annotations=annotations),
            *extra,
        )
    )
    pools = [
        gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, disruption={"budgets": [{"nodes": "100%"}]})
    ]
    return plan(PlanInput(snapshot=snapshot, now=NOW, pools=read_pools(pools)))


def _removed(result: Plan) -> set[str]:
    return {a.node for a in result.actions if a.type == "removeNode"}


def test_multi_node_keeps_the_big_node_and_empties_the_small_ones_into_it() -> None:
    result = _plan()
    assert result.summary.nodes_after == 1
    assert _removed(result) == {"s1", "s2", "s3"}
    evictions = {a.pod: a.to_node for a in result.actions if a.type == "evict"}
    assert evictions == {"default/w-s1": "big", "default/w-s2": "big", "default/w-s3": "big"}
    assert result.summary.pods_unplaceable == 0
    assert all("multi-node consolidation" in a.reason for a in result.actions if a.type == "removeNode")


def test_multi_node_plan_is_deterministic() -> None:
    assert _plan() == _plan()


def test_a_do_not_disrupt_pod_keeps_its_node_whichever_method_wins() -> None:
    result = _plan(annotations={"karpenter.sh/do-not-disrupt": "true"})
    assert "s3" not in _removed(result)
    assert "default/w-s3" not in {a.pod for a in result.actions if a.type == "evict"}
    assert all(a.to_node not in _removed(result) for a in result.actions if a.type == "evict")
    kept = {s.node: s.reason for s in result.skipped if s.pod is None}
    assert "do-not-disrupt" in kept["s3"]
    # Two nodes either way; the cheaper plan (two small nodes, not the 8-GPU one) wins the tie.
    assert result.summary.nodes_after == 2
    assert "big" in _removed(result)


def test_a_pdb_counts_each_drained_node_on_its_own() -> None:
    """w-s1 and w-s2 share a PDB allowing one disruption, on two nodes: the executor drains one node
    at a time, so both go in one plan."""
    result = _plan(pdb("api", {"app": "api"}, allowed=1))
    assert _removed(result) == {"s1", "s2", "s3"}
    assert result.summary.nodes_after == 1
    assert result.summary.pods_unplaceable == 0


def test_a_node_whose_own_pods_exceed_a_pdb_stays() -> None:
    """Both pods of the PDB on s1: no plan may drain it (a target like any node that stays)."""
    result = _plan(pdb("api", {"app": "api"}, allowed=1), pod("w-s1b", "s1", gpus=1, labels={"app": "api"}))
    assert "s1" not in _removed(result)
    kept = {s.node: s.reason for s in result.skipped if s.pod is None}
    assert "PDB default/api allows 1 disruption(s) at a time; this node's pods need 2" in kept["s1"]
    evicted = {a.pod for a in result.actions if a.type == "evict"}
    assert not {"default/w-s1", "default/w-s1b"} & evicted
    assert all(a.to_node not in _removed(result) for a in result.actions if a.type == "evict")


def test_keep_set_covers_the_demand_of_the_nodes_it_empties() -> None:
    sizes = {0: (8,), 1: (2,), 2: (2,), 3: (2,)}
    free = {0: [7], 1: [1], 2: [1], 3: [1]}
    load = {0: [1], 1: [1], 2: [1], 3: [1]}
    keep = choose_keep_set(
        [0, 1, 2, 3],
        size=sizes.__getitem__,
        used=lambda i: (sizes[i][0] - free[i][0],),
        free=free.__getitem__,
        load=load.__getitem__,
        staying_free=[0],
        hardness=lambda i: (-load[i][0],),
        name=str,
    )
    assert keep.keep == frozenset({0})
    assert keep.drain_order == (1, 2, 3)
