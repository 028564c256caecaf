"""The consolidation executor against an in-memory API server and the fake provider."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.runtime.consolidation import TAINT, Executor
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent
from rightsizer.runtime.drain_steps import ExecutorSettings, NodeStep, Result
from rightsizer.runtime.mapping import read_pool
from tests.unit.fake_drain import Clock, FakeDrain
from tests.unit.planner_builders import gpu_node, gpu_pool, pdb, pod

pytestmark = pytest.mark.unit

POOL = read_pool(
    gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, disruption={"budgets": [{"nodes": "1"}]})
)


def world(*extra: dict[str, Any]) -> FakeDrain:
    return FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        gpu_node("a-2"),
        pod("web-1", "a-0", gpus=1),
        pod("web-2", "a-0", gpus=2),
        pod("big-1", "a-1", gpus=4),
        *extra,
    )


def executor(edge: FakeDrain, provider: FakeProvider, clock: Clock, timeout: float = 60) -> Executor:
    return Executor(
        edge,
        lambda pool: provider if pool == provider.pool else None,
        clock=clock,
        sleep=clock.sleep,
        settings=ExecutorSettings(drain_timeout=timedelta(seconds=timeout), poll_seconds=2),
    )


def drain_a0(edge: FakeDrain, ex: Executor) -> Result:
    step = NodeStep("a-0", "a100", "underutilised", ("default/web-1", "default/web-2"))
    return ex.run(step, [POOL], edge.nodes_list()).result


def test_drain_records_intent_before_tainting_then_evicts_and_removes() -> None:
    edge, clock = world(), Clock()
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])
    assert drain_a0(edge, executor(edge, provider, clock)) is Result.REMOVED
    kinds = [c[0] for c in edge.calls]
    assert kinds[:2] == ["annotate", "taint"], edge.calls
    assert kinds.index("evict") > kinds.index("taint")
    assert provider.removed == ["a-0"]
    assert {"default/web-1", "default/web-2"}.isdisjoint(edge.pods)
    assert any(e[2] == "NodeRemoved" for e in edge.events)


def test_intent_names_the_pods_and_the_pool() -> None:
    edge, clock = world(), Clock()
    seen: list[Intent | None] = []
    edge.on_evict.append(
        lambda _: seen.append(
            Intent.from_json(edge.nodes["a-0"]["metadata"]["annotations"][INTENT_ANNOTATION])
        )
    )
    drain_a0(edge, executor(edge, FakeProvider("a100", ["a-0"]), clock))
    intent = seen[0]
    assert intent is not None and intent.pool == "a100" and intent.phase == "draining"
    assert set(intent.pods) == {"default/web-1", "default/web-2"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e.nodes.pop("a-0"), "no longer exists"),
        (lambda e: e.add(pod("intruder-1", "a-0", gpus=1)), "arrived on a-0 after planning"),
        (lambda e: e.add(pod("bare", "a-0", gpus=1, owner=None)), "bare pod"),
        (
            lambda e: e.add(pod("safe-1", "a-0", annotations={"rightsizer.io/do-not-disrupt": "true"})),
            "do-not-disrupt",
        ),
        (lambda e: e.add(pdb("web", {"app": "web"}, allowed=0)), "allows no disruption"),
        (
            lambda e: e.nodes["a-0"]["metadata"]["annotations"].update(
                {"karpenter.sh/do-not-disrupt": "true"}
            ),
            "node annotated",
        ),
        (
            lambda e: e.nodes["a-0"]["metadata"]["labels"].update({"rightsizer.io/pool": "other"}),
            "no longer in",
        ),
    ],
    ids=[
        "node-gone",
        "new-pod",
        "bare-pod",
        "do-not-disrupt-pod",
        "pdb-at-limit",
        "node-protected",
        "pool-changed",
    ],
)
def test_revalidation_skips_a_step_the_world_no_longer_allows(change: object, why: str) -> None:
    edge, clock = world(), Clock()
    change(edge)  # type: ignore[operator]
    provider = FakeProvider("a100", ["a-0"])
    step = NodeStep("a-0", "a100", "underutilised", ("default/web-1", "default/web-2"))
    outcome = executor(edge, provider, clock).run(step, [POOL], edge.nodes_list())
    assert outcome.result is Result.SKIPPED and why in outcome.message
    assert not edge.calls, "a skipped step touches nothing"
    assert provider.removed == []


def test_budget_of_one_node_refuses_a_second_disruption() -> None:
    edge, clock = world(), Clock()
    edge.set_taint("a-2", TAINT, True)
    edge.calls.clear()
    outcome = executor(edge, FakeProvider("a100", ["a-0"]), clock).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL], edge.nodes_list()
    )
    assert outcome.result is Result.SKIPPED and "budget" in outcome.message
    assert not edge.calls


def test_refused_eviction_stops_the_node_and_untaints_it() -> None:
    edge, clock = world(), Clock()
    edge.refuse["default/web-2"] = "429 Cannot evict pod as it would violate the pod's disruption budget."
    provider = FakeProvider("a100", ["a-0"])
    outcome = executor(edge, provider, clock).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL], edge.nodes_list()
    )
    assert outcome.result is Result.BLOCKED
    assert edge.tainted() == set()
    assert INTENT_ANNOTATION not in edge.nodes["a-0"]["metadata"]["annotations"]
    assert provider.removed == []
    assert any(e[2] == "DrainBlocked" for e in edge.events)


def test_replacements_not_running_in_time_untaint_and_give_up() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 1000
    provider = FakeProvider("a100", ["a-0"])
    outcome = executor(edge, provider, clock, timeout=30).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL], edge.nodes_list()
    )
    assert outcome.result is Result.TIMED_OUT
    assert 30 <= clock.slept <= 32, "the wait is bounded by the drain timeout"
    assert edge.tainted() == set() and provider.removed == []
    assert any(e[2] == "DrainTimedOut" for e in edge.events)


def test_waits_for_replacements_before_removing() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 3
    provider = FakeProvider("a100", ["a-0"])
    assert drain_a0(edge, executor(edge, provider, clock)) is Result.REMOVED
    assert edge.polls == 4 and clock.slept == 6


def test_failed_removal_rolls_the_node_back() -> None:
    edge, clock = world(), Clock()
    provider = FakeProvider("a100", ["a-0"], fail_removal=True)
    assert drain_a0(edge, executor(edge, provider, clock)) is Result.FAILED
    assert edge.tainted() == set()


def crashed_mid(phase: str) -> FakeDrain:
    """What a killed operator leaves behind: intent and taint on a-0."""
    edge = world()
    intent = Intent("underutilised", "a100", phase, Clock()(), ("default/web-1",))
    edge.annotate("a-0", {INTENT_ANNOTATION: intent.to_json()})
    edge.set_taint("a-0", TAINT, True)
    edge.calls.clear()
    return edge


def test_recovery_rolls_back_an_interrupted_drain() -> None:
    edge, clock = crashed_mid("draining"), Clock()
    provider = FakeProvider("a100", ["a-0"])
    outcomes = executor(edge, provider, clock).recover()
    assert [o.result for o in outcomes] == [Result.ROLLED_BACK]
    assert edge.tainted() == set()
    assert INTENT_ANNOTATION not in edge.nodes["a-0"]["metadata"]["annotations"]
    assert provider.removed == []


def test_recovery_finishes_an_interrupted_removal() -> None:
    edge, clock = crashed_mid("removing"), Clock()
    provider = FakeProvider("a100", ["a-0"])
    outcomes = executor(edge, provider, clock).recover()
    assert [o.result for o in outcomes] == [Result.RESUMED]
    assert provider.removed == ["a-0"]


def test_recovery_rolls_back_when_the_pool_is_gone() -> None:
    edge, clock = crashed_mid("removing"), Clock()
    provider = FakeProvider("other", [])
    outcomes = executor(edge, provider, clock).recover()
    assert [o.result for o in outcomes] == [Result.ROLLED_BACK]
    assert edge.tainted() == set()


def test_unreadable_intent_is_rolled_back() -> None:
    edge, clock = world(), Clock()
    edge.annotate("a-0", {INTENT_ANNOTATION: "{not json"})
    outcomes = executor(edge, FakeProvider("a100", ["a-0"]), clock).recover()
    assert [o.result for o in outcomes] == [Result.ROLLED_BACK]


def test_a_node_deleted_mid_drain_stops_the_wait_at_once_and_leaves_nothing_behind() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 1000  # replacements never come: only the node's deletion ends the wait
    answer = edge.replacements_ready

    def deleted_after_two_polls(evicted: Any, node: str) -> tuple[bool, str]:
        if edge.polls == 2:
            edge.nodes.pop("a-0")  # someone else deletes the node while we wait
        return answer(evicted, node)

    edge.replacements_ready = deleted_after_two_polls  # type: ignore[method-assign]
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])
    outcome = executor(edge, provider, clock, timeout=300).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL], edge.nodes_list()
    )
    assert outcome.result is Result.NODE_GONE
    assert clock.slept <= 3 * 2, "noticed at the next poll, not at the drain timeout"
    assert set(outcome.evicted) == {"default/web-1", "default/web-2"}
    assert edge.tainted() == set(), "no other node was tainted"
    assert all(INTENT_ANNOTATION not in raw["metadata"].get("annotations", {}) for raw in edge.nodes.values())
    assert provider.removed == [], "nothing is asked of the provider for a node that is gone"
    assert [(e[0], e[1], e[2]) for e in edge.events] == [("a-0", "Warning", "DrainNodeGone")]
    assert "deleted by someone else" in edge.events[0][3]


def test_timed_out_drain_names_the_evicted_pods() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 1000
    outcome = executor(edge, FakeProvider("a100", ["a-0"]), clock, timeout=10).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL], edge.nodes_list()
    )
    assert outcome.result is Result.TIMED_OUT
    assert "default/web-1, default/web-2" in outcome.message and "replacements Pending" in outcome.message


def test_a_node_two_pools_select_is_not_drained() -> None:
    edge, clock = world(), Clock()
    rival = read_pool(gpu_pool("gold", selector={"kubernetes.io/hostname": "a-0"}))
    outcome = executor(edge, FakeProvider("a100", ["a-0"]), clock).run(
        NodeStep("a-0", "a100", "x", ("default/web-1", "default/web-2")), [POOL, rival], edge.nodes_list()
    )
    assert outcome.result is Result.SKIPPED and "GPUNodePools a100 and gold" in outcome.message
    assert not edge.calls
