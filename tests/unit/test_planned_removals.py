"""Every node a plan empties carries a PreferNoSchedule mark before the first eviction, and exactly
those: the mark follows the plan, leaves with it, and a dry run or a held pool marks nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.core.snapshot import Taint
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.node_pools import PoolManager
from rightsizer.runtime.planned_removals import PLANNED_REMOVAL, apply_marks, mark_changes
from tests.unit.fake_drain import Clock, FakeDrain
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list, pod
from tests.unit.test_pool_pass import FAST, Cluster, manager, unavailable

pytestmark = pytest.mark.unit

# Budgets wide open: one plan empties both small nodes into the big one, one node drained per pass.
OPEN: dict[str, Any] = {**FAST, "disruption": {"budgets": [{"nodes": "100%"}]}}


def marked(edge: FakeDrain) -> set[str]:
    return {
        name
        for name, raw in edge.nodes.items()
        if any(t["key"] == PLANNED_REMOVAL.key for t in raw["spec"].get("taints", []))
    }


def fleet() -> tuple[FakeDrain, PoolManager]:
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        gpu_node("a-2"),
        pod("web-1", "a-0", gpus=1),
        pod("web-2", "a-1", gpus=1),
        pod("big-1", "a-2", gpus=4),
    )
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **OPEN)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1", "a-2"])},
    )
    return edge, pools


def test_every_node_of_the_plan_is_marked_before_the_first_eviction_and_the_kept_node_is_not() -> None:
    edge, pools = fleet()
    pools.run_pass("a100")
    first_eviction = next(i for i, call in enumerate(edge.calls) if call[0] == "evict")
    assert ("taint", "a-1") in edge.calls[:first_eviction], "a-1 marked before a-0's pod moved"
    # a-1, emptied next, keeps its mark; a-2, where both pods go, never has one.
    assert "a-1" in marked(edge) and "a-2" not in marked(edge)
    assert ("taint", "a-2") not in edge.calls


def test_a_node_the_plan_no_longer_empties_loses_its_mark() -> None:
    edge, pools = fleet()
    pools.settings = replace(pools.settings, max_nodes_per_pass=0)  # plan and mark, drain nothing
    pools.run_pass("a100")
    assert marked(edge) == {"a-0", "a-1"}
    # a-1 now holds work that fits nowhere else: the plan keeps it, and the mark goes.
    edge.add(pod("huge-1", "a-1", gpus=7))
    pools.run_pass("a100")
    assert "a-1" not in marked(edge)


def test_a_dry_run_marks_nothing_and_a_held_pool_takes_its_marks_off() -> None:
    edge, pools = fleet()
    pools.settings = replace(pools.settings, dry_run=True)
    pools.run_pass("a100")
    assert marked(edge) == set() and ("taint", "a-1") not in edge.calls

    pools.settings = replace(pools.settings, dry_run=False, max_nodes_per_pass=0)
    pools.run_pass("a100")
    assert marked(edge) == {"a-0", "a-1"}
    pools.activity = unavailable  # GPU activity unknown: no node with pods is drained, or marked
    pools.run_pass("a100")
    assert marked(edge) == set()


def test_mark_changes_add_the_planned_and_remove_the_rest() -> None:
    mark = {"key": PLANNED_REMOVAL.key, "value": "consolidation", "effect": "PreferNoSchedule"}
    other = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
    nodes = snapshot_from_document(
        kube_list(gpu_node("a"), gpu_node("b", taints=[mark]), gpu_node("c", taints=[mark, other]))
    ).nodes
    assert mark_changes(nodes, {"a", "b"}) == (["a"], ["c"])
    assert mark_changes(nodes, set()) == ([], ["b", "c"])


def test_a_node_that_refuses_its_mark_is_reported_and_the_others_are_still_marked() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.set: list[tuple[str, bool]] = []

        def set_taint(self, node: str, taint: Taint, present: bool) -> None:
            if node == "a":
                raise ApiException(status=403, reason="Forbidden")
            self.set.append((node, present))

    nodes = snapshot_from_document(kube_list(gpu_node("a"), gpu_node("b"))).nodes
    edge = Refusing()
    assert apply_marks(edge, nodes, {"a", "b"}) == ["a"]
    assert edge.set == [("b", True)]
