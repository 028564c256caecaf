"""Make-before-break in a full fleet: a pod whose surge replica already runs elsewhere needs no room of
its own, so the room that is left goes to the node's other pods, which are evicted first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rightsizer.core.budgets import PodPolicy
from rightsizer.core.consolidation import unplaceable_from
from rightsizer.core.pools import assign_pools
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.surge import Owner
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent
from rightsizer.runtime.drain_steps import NodeStep, Result
from rightsizer.runtime.mapping import read_pool
from tests.unit.fake_drain import Clock, FakeDrain, FakeSurges, surging_executor
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list, pod, ready

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
POOL = read_pool(
    gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, disruption={"budgets": [{"nodes": "1"}]})
)
WEB = Owner("Deployment", "default", "web")
INFERENCE = PodPolicy(workload="default/web-gw")


def full_fleet() -> list[dict[str, object]]:
    """a-0 holds web-1 (served, its surge replica already on a-1) and job-1; a-1 has one GPU left."""
    return [
        gpu_node("a-0", gpus=2),
        gpu_node("a-1", gpus=8),
        ready(pod("web-1", "a-0", gpus=1)),
        ready(pod("job-1", "a-0", gpus=1)),
        ready(pod("big-1", "a-1", gpus=6)),
        ready(pod("web-surge", "a-1", gpus=1)),
    ]


def test_a_pod_covered_by_a_surge_replica_asks_for_no_room_in_the_live_simulation() -> None:
    snapshot = snapshot_from_document(kube_list(*full_fleet()))
    assignment = assign_pools(snapshot.nodes, [POOL])
    twice = unplaceable_from(snapshot, assignment, "a-0", now=NOW)
    assert twice is not None and "no longer fits" in twice, "counted twice, two pods want one free GPU"
    assert unplaceable_from(snapshot, assignment, "a-0", now=NOW, covered={"default/web-1"}) is None


def drain_a0(owner: Owner) -> tuple[FakeDrain, list[tuple[frozenset[str], tuple[str, ...]]]]:
    """Drain a-0 with web-1 owned by ``owner``: the evictions, and what each live check was given."""
    edge = FakeDrain(*full_fleet())
    surges = FakeSurges(edge.calls, {"default/web-1": owner})
    surges.add(owner, 2)
    edge.on_evict.append(lambda key: surges.lose(owner) if key == "default/web-1" else None)
    executor, _, _ = surging_executor(edge, surges)
    checked: list[tuple[frozenset[str], tuple[str, ...]]] = []

    def unplaceable(node: str, covered: frozenset[str]) -> str | None:
        evicted = tuple(c[1] for c in edge.calls if c[0] == "evict")
        checked.append((covered, evicted))
        return None

    step = NodeStep("a-0", "a100", "underutilised", ("default/web-1", "default/job-1"))
    outcome = executor.run(step, [POOL], edge.nodes_list(), {"default/web-1": INFERENCE}, unplaceable)
    assert outcome.result is Result.REMOVED, outcome.message
    return edge, checked


def test_the_other_pods_are_evicted_first_and_checked_without_the_covered_ones() -> None:
    edge, checked = drain_a0(WEB)
    assert [c[1] for c in edge.calls if c[0] == "evict"] == ["default/job-1", "default/web-1"]
    assert checked == [(frozenset({"default/web-1"}), ())], "one check, before job-1, web-1 left out"


def test_a_statefulset_pod_comes_back_beside_its_surge_replica_so_it_is_checked_for_room() -> None:
    edge, checked = drain_a0(Owner("StatefulSet", "default", "web"))
    assert [c[1] for c in edge.calls if c[0] == "evict"] == ["default/web-1", "default/job-1"]
    assert [covered for covered, _ in checked] == [frozenset(), frozenset()], "both pods need room"


# -- owners a drain left raised -------------------------------------------------------------------


def sweeping(node_annotations: dict[str, str] | None) -> tuple[FakeDrain, FakeSurges, Executor]:
    """WEB raised by the drain of a-0; a-0 exists with these annotations, or is gone (None)."""
    nodes = [] if node_annotations is None else [gpu_node("a-0", annotations=node_annotations)]
    edge = FakeDrain(*nodes, gpu_node("a-1"))
    surges = FakeSurges(edge.calls, {})
    surges.add(WEB, 2)
    surges.raise_(WEB, "a-0", 1)
    clock = Clock()
    return edge, surges, Executor(edge, lambda pool: None, clock=clock, sleep=clock.sleep, surges=surges)


def intent_listing(*owners: Owner) -> dict[str, str]:
    intent = Intent("underutilised", "a100", "draining", NOW, ("default/web-1",), surges=owners)
    return {INTENT_ANNOTATION: intent.to_json()}


@pytest.mark.parametrize(
    ("annotations", "busy", "restored"),
    [
        (None, (), True),
        ({}, (), True),
        (intent_listing(Owner("Deployment", "default", "other")), (), True),
        (intent_listing(WEB), (), False),
        ({INTENT_ANNOTATION: "{not json"}, (), False),
        ({}, ("a-0",), False),
    ],
    ids=["node-gone", "no-intent", "intent-of-others", "its-drain-runs", "unreadable-intent", "busy-here"],
)
def test_an_owner_is_restored_only_when_no_drain_can_finish_it(
    annotations: dict[str, str] | None, busy: tuple[str, ...], restored: bool
) -> None:
    edge, surges, executor = sweeping(annotations)
    messages = executor.sweep_surges(busy)
    assert (surges.replicas[WEB] == 2 and not surges.records) is restored
    assert bool(messages) is restored
    if restored:
        assert "restored to 2 replica(s)" in messages[0] and "a-0" in messages[0]
        assert [e[2] for e in edge.events] == ["DrainSurgeRestored"]


def test_owners_left_raised_are_looked_for_now_and_then_not_every_pass() -> None:
    _, surges, executor = sweeping(None)
    clock = executor.clock
    assert isinstance(clock, Clock)
    assert executor.sweep_surges() and not surges.records
    surges.raise_(WEB, "a-0", 1)  # left raised again by another drain of a node now gone
    assert executor.sweep_surges() == [], "one list per few minutes"
    clock.sleep(5 * 60)
    assert executor.sweep_surges() and not surges.records
