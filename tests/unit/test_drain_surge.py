"""Make-before-break: which owners a drain raises (pure), and the executor's sequence around it."""

from __future__ import annotations

from typing import Any

import pytest

from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.core.budgets import PodPolicy
from rightsizer.core.errors import InvalidPool
from rightsizer.core.snapshot import Pod
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.surge import MakeBeforeBreak, Owner, SurgeRecord, plan_surges, unsurged
from rightsizer.runtime.consolidation import TAINT, Executor
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent
from rightsizer.runtime.drain_steps import NodeStep, Result
from rightsizer.runtime.mapping import read_pool
from tests.unit.fake_drain import Clock, FakeDrain, FakeSurges, surging_executor
from tests.unit.planner_builders import gpu_node, gpu_pool, pod, ready

pytestmark = pytest.mark.unit

WEB = Owner("Deployment", "default", "web")
DB = Owner("StatefulSet", "default", "db")
SEL = {"rightsizer.io/pool": "p"}
INFERENCE = PodPolicy(workload="default/web-gw")
TRAINING = PodPolicy(training=True, workload="default/train-gw")


def parsed(*raws: dict[str, Any]) -> tuple[Pod, ...]:
    pods: tuple[Pod, ...] = snapshot_from_document({"kind": "List", "items": list(raws)}).pods
    return pods


# -- the pure decision ----------------------------------------------------------------------------


def test_an_inference_owner_is_raised_by_its_ready_pods_on_the_node() -> None:
    pods = parsed(ready(pod("web-1", "a-0")), ready(pod("web-2", "a-0")), pod("web-3", "a-0"))
    owners = {p.key: WEB for p in pods}
    policies = {p.key: INFERENCE for p in pods}
    (surge,) = plan_surges(pods, owners, policies, MakeBeforeBreak.INFERENCE_ONLY)
    assert (surge.owner, surge.count, surge.pods) == (WEB, 2, ("default/web-1", "default/web-2"))
    assert "+2" in surge.reason


@pytest.mark.parametrize(
    ("setting", "policy", "owner", "raised"),
    [
        (MakeBeforeBreak.INFERENCE_ONLY, None, WEB, False),
        (MakeBeforeBreak.INFERENCE_ONLY, TRAINING, WEB, False),
        (MakeBeforeBreak.INFERENCE_ONLY, INFERENCE, DB, True),
        (MakeBeforeBreak.ALWAYS, None, WEB, True),
        (MakeBeforeBreak.ALWAYS, None, Owner("Job", "default", "j"), False),
        (MakeBeforeBreak.NEVER, INFERENCE, WEB, False),
    ],
    ids=["no-workload", "training", "statefulset", "always", "not-scalable-kind", "never"],
)
def test_who_is_raised_follows_the_pool_setting(
    setting: MakeBeforeBreak, policy: PodPolicy | None, owner: Owner, raised: bool
) -> None:
    pods = parsed(ready(pod("web-1", "a-0")))
    policies = {pods[0].key: policy} if policy else {}
    assert bool(plan_surges(pods, {pods[0].key: owner}, policies, setting)) is raised


def test_the_replica_loop_sees_a_count_without_the_surge() -> None:
    record = SurgeRecord("a-0", original=3, surge=2, available_before=3)
    assert unsurged(5, {"rightsizer.io/drain-surge": record.to_json()}) == 3
    assert unsurged(5, {"rightsizer.io/drain-surge": "not json"}) == 5
    assert SurgeRecord.from_json(record.with_original(4).to_json()) == SurgeRecord("a-0", 4, 2, 3)


def test_the_pool_setting_defaults_to_inference_only_and_refuses_other_values() -> None:
    assert read_pool(gpu_pool("p", selector=SEL)).make_before_break is MakeBeforeBreak.INFERENCE_ONLY
    always = read_pool(gpu_pool("p", selector=SEL, disruption={"makeBeforeBreak": "Always"}))
    assert always.make_before_break is MakeBeforeBreak.ALWAYS
    with pytest.raises(InvalidPool, match="makeBeforeBreak"):
        read_pool(gpu_pool("p", selector=SEL, disruption={"makeBeforeBreak": "Sometimes"}))


# -- the executor ---------------------------------------------------------------------------------

POOL = read_pool(
    gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, disruption={"budgets": [{"nodes": "1"}]})
)
STEP = NodeStep("a-0", "a100", "underutilised", ("default/web-1", "default/web-2"))
POLICIES = {"default/web-1": INFERENCE, "default/web-2": INFERENCE}


def world(owner: Owner = WEB) -> tuple[FakeDrain, FakeSurges, Executor, FakeProvider, Clock]:
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        ready(pod("web-1", "a-0", gpus=1)),
        ready(pod("web-2", "a-0", gpus=1)),
        ready(pod("web-3", "a-1", gpus=1)),
    )
    surges = FakeSurges(edge.calls, {"default/web-1": owner, "default/web-2": owner})
    surges.add(owner, 3)
    edge.on_evict.append(lambda key: surges.lose(owner))
    executor, provider, clock = surging_executor(edge, surges)
    return edge, surges, executor, provider, clock


def test_owners_are_raised_and_ready_before_any_eviction_and_restored_after() -> None:
    edge, surges, executor, provider, _ = world()
    surges.ready_after = 2  # the surge replicas take two polls to become available
    outcome = executor.run(STEP, [POOL], edge.nodes_list(), POLICIES)
    assert outcome.result is Result.REMOVED, outcome.message
    kinds = [c[0] for c in edge.calls]
    assert kinds[:3] == ["annotate", "taint", "annotate"], "intent, taint, then the owners listed"
    assert kinds.index("raise") < kinds.index("evict") < kinds.index("restore")
    assert ("raise", WEB.key, "2") in edge.calls and ("restore", WEB.key, "3") in edge.calls
    assert surges.lowest[WEB] >= 3, "never fewer available replicas than before the drain"
    assert surges.replicas[WEB] == 3 and not surges.records and provider.removed == ["a-0"]
    assert any(e[2] == "DrainSurge" for e in edge.events)


def test_a_statefulset_is_restored_only_after_its_replacements_are_running() -> None:
    edge, surges, executor, _, _ = world(DB)
    edge.polls_until_ready = 2
    seen: list[int] = []
    original = edge.replacements_ready

    def replacements_ready(evicted: Any, node: str) -> tuple[bool, str]:
        seen.append(surges.replicas[DB])
        return original(evicted, node)

    edge.replacements_ready = replacements_ready  # type: ignore[method-assign]
    assert executor.run(STEP, [POOL], edge.nodes_list(), POLICIES).result is Result.REMOVED
    assert seen and set(seen) == {5}, "still raised while its pods come back"
    assert surges.replicas[DB] == 3


def test_surge_replicas_never_available_stop_the_drain_restore_the_count_and_untaint() -> None:
    edge, surges, executor, provider, clock = world()
    surges.ready_after = None
    outcome = executor.run(STEP, [POOL], edge.nodes_list(), POLICIES)
    assert outcome.result is Result.TIMED_OUT and "nothing evicted" in outcome.message
    assert "3/5 available" in outcome.message, outcome.message
    assert clock.slept >= 60
    assert not any(c[0] == "evict" for c in edge.calls)
    assert surges.replicas[WEB] == 3 and not surges.records
    assert edge.tainted() == set() and INTENT_ANNOTATION not in edge.nodes["a-0"]["metadata"]["annotations"]
    assert [e[2] for e in edge.events if e[1] == "Warning"] == ["DrainSurgeTimedOut"]
    assert provider.removed == []


def test_an_owner_raised_by_another_drain_stops_this_one_before_evicting() -> None:
    edge, surges, executor, _, _ = world()
    surges.records[WEB] = SurgeRecord("a-9", 3, 1, 3)
    outcome = executor.run(STEP, [POOL], edge.nodes_list(), POLICIES)
    assert outcome.result is Result.BLOCKED and "drain of node a-9" in outcome.message
    assert surges.records[WEB].node == "a-9", "another drain's surge is left to it"
    assert edge.tainted() == set()


def test_without_a_policy_inference_only_evicts_without_raising() -> None:
    edge, _, executor, _, _ = world()
    assert executor.run(STEP, [POOL], edge.nodes_list(), {}).result is Result.REMOVED
    assert not any(c[0] == "raise" for c in edge.calls)


def test_a_restarted_operator_restores_the_owners_an_interrupted_drain_raised() -> None:
    edge, surges, executor, _, clock = world()
    surges.raise_(WEB, "a-0", 2)
    intent = Intent("underutilised", "a100", "draining", clock(), STEP.pods, surges=(WEB,))
    edge.nodes["a-0"]["metadata"]["annotations"][INTENT_ANNOTATION] = intent.to_json()
    edge.set_taint("a-0", TAINT, True)
    (outcome,) = executor.recover()
    assert outcome.result is Result.ROLLED_BACK
    assert surges.replicas[WEB] == 3 and not surges.records
    assert edge.tainted() == set()
    kinds = [c[0] for c in edge.calls]
    assert kinds.index("restore") < kinds.index("untaint"), "restored while the intent still says so"


def test_the_node_deleted_while_surge_replicas_start_restores_the_count() -> None:
    edge, surges, executor, _, _ = world()
    surges.ready_after = None
    original = surges.read

    def read(owner: Owner) -> Any:
        edge.nodes.pop("a-0", None)
        return original(owner)

    surges.read = read  # type: ignore[method-assign]
    outcome = executor.run(STEP, [POOL], edge.nodes_list(), POLICIES)
    assert outcome.result is Result.NODE_GONE
    assert surges.replicas[WEB] == 3 and not surges.records
