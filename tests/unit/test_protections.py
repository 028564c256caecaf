"""Startup shield, time-limited do-not-disrupt, gangs and unknown GPU activity, as the planner applies
them (the executor re-checks the same rules: tests/unit/test_executor.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rightsizer.core.planner import Plan, PlanInput, PlannerOptions, plan
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.mapping import read_pools
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list, pod, ready

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def pools(**spec: Any) -> list[dict[str, Any]]:
    spec.setdefault("disruption", {"budgets": [{"nodes": "100%"}]})
    return [gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **spec)]


def fleet(*movers: dict[str, Any], nodes: tuple[dict[str, Any], ...] = ()) -> tuple[dict[str, Any], ...]:
    """``movers`` on a1, room for them on a2, whose own pod stays (bare): the plan would empty a1."""
    return (
        *(nodes or (gpu_node("a1"), gpu_node("a2"))),
        pod("keep-1", "a2", gpus=4, owner=None),
        *movers,
    )


def run(*items: dict[str, Any], docs: list[dict[str, Any]] | None = None, **inputs: Any) -> Plan:
    return plan(
        PlanInput(
            snapshot=snapshot_from_document(kube_list(*items)),
            now=inputs.pop("now", NOW),
            pools=read_pools(docs if docs is not None else pools()),
            **inputs,
        )
    )


def evicted(result: Plan) -> set[str]:
    return {a.pod or "" for a in result.actions if a.type == "evict"}


def why(result: Plan, node: str) -> str:
    return next(s.reason for s in result.skipped if s.node == node and s.pod is None)


def test_a_pod_ready_for_less_than_the_grace_period_is_not_moved() -> None:
    fresh = ready(pod("w-1", "a1", gpus=2), "2026-03-02T09:55:00Z")  # Ready 5 minutes ago
    result = run(*fleet(fresh))
    assert "default/w-1" not in evicted(result)
    assert "Ready for 5m < startupGracePeriod 10m" in why(result, "a1")
    # Once Ready for the whole period it moves; a pool with a shorter period moves it earlier.
    assert "default/w-1" in evicted(run(*fleet(fresh), now=NOW + timedelta(minutes=5)))
    assert "default/w-1" in evicted(run(*fleet(fresh), docs=pools(startupGracePeriod="2m")))


def test_a_pod_still_loading_is_shielded_but_one_that_never_became_ready_is_not() -> None:
    loading = pod("w-1", "a1", gpus=2, created="2026-03-02T09:58:00Z")
    assert "starting up (not Ready yet" in why(run(*fleet(loading)), "a1")
    broken = pod("w-1", "a1", gpus=2, created="2026-03-01T09:00:00Z")
    assert "default/w-1" in evicted(run(*fleet(broken)))


def test_the_workload_grace_period_overrides_the_pool() -> None:
    from rightsizer.core.budgets import PodPolicy

    fresh = ready(pod("w-1", "a1", gpus=2), "2026-03-02T09:00:00Z")  # Ready an hour ago
    policy = {"default/w-1": PodPolicy(startup_grace=timedelta(hours=2))}
    assert "default/w-1" not in evicted(run(*fleet(fresh), pod_policies=policy))
    assert "default/w-1" in evicted(run(*fleet(fresh)))


@pytest.mark.parametrize(
    ("value", "protected"),
    [
        ("2026-03-02T11:00:00Z", True),
        ("2026-03-02T12:00:00+01:00", True),
        ("2026-03-02T09:59:59Z", False),
        ("tomorrow", True),  # unreadable: fail closed
        ("2026-03-02", True),  # a date is not a time
        ("2026-03-02T11:00:00", True),  # no zone: not RFC 3339
    ],
)
def test_do_not_disrupt_until_protects_a_pod_until_then(value: str, protected: bool) -> None:
    mover = pod("w-1", "a1", gpus=2, annotations={"rightsizer.io/do-not-disrupt-until": value})
    result = run(*fleet(mover))
    assert ("default/w-1" not in evicted(result)) is protected
    if protected:
        assert "rightsizer.io/do-not-disrupt-until" in why(result, "a1")


def test_do_not_disrupt_until_on_a_node_keeps_the_node() -> None:
    nodes = (gpu_node("a1", annotations={"rightsizer.io/do-not-disrupt-until": "2026-03-03T00:00:00Z"}),)
    result = run(*fleet(pod("w-1", "a1", gpus=2), nodes=(*nodes, gpu_node("a2"))))
    assert not result.actions
    assert "node annotated rightsizer.io/do-not-disrupt-until" in why(result, "a1")
    unreadable = (gpu_node("a1", annotations={"rightsizer.io/do-not-disrupt-until": "soon"}), gpu_node("a2"))
    assert "not an RFC 3339 time" in why(run(*fleet(pod("w-1", "a1", gpus=2), nodes=unreadable)), "a1")


@pytest.mark.parametrize(
    "label",
    [
        "jobset.sigs.k8s.io/jobset-name",
        "training.kubeflow.org/job-name",
        "leaderworkerset.sigs.k8s.io/name",
        "ray.io/cluster",
        "kueue.x-k8s.io/pod-group-name",
    ],
)
def test_a_gang_spread_over_two_nodes_is_never_split(label: str) -> None:
    # Four pods of one group on two half-empty nodes: either node's pods would fit on the other.
    gang = [pod(f"g-{i}", f"a{1 + i // 2}", gpus=1, labels={label: "run-7"}, owner="Job") for i in range(4)]
    result = run(gpu_node("a1"), gpu_node("a2"), *gang)
    assert evicted(result) == set()
    assert f"member of gang {label}=run-7" in why(result, "a1")


def test_a_label_the_pool_names_makes_a_gang() -> None:
    gang = [pod(f"g-{i}", f"a{1 + i // 2}", gpus=1, labels={"team/run": "r1"}) for i in range(4)]
    assert evicted(run(gpu_node("a1"), gpu_node("a2"), *gang))
    result = run(gpu_node("a1"), gpu_node("a2"), *gang, docs=pools(gangLabels=["team/run"]))
    assert evicted(result) == set()


def test_a_node_with_a_gpu_pod_of_unknown_activity_is_not_drained_while_activity_is_measured() -> None:
    items = fleet(pod("w-1", "a1", gpus=2), pod("w-2", "a1", gpus=1))
    measured = PlannerOptions(activity_measured=True)
    known = {"default/w-1": Decimal(3), "default/keep-1": Decimal(50)}
    result = run(*items, options=measured, gpu_activity=known)
    assert evicted(result) == set()
    assert "GPU activity of pod default/w-2 is unknown" in why(result, "a1")
    # Known activity, the pool's explicit opt-in, or an offline plan on requests: it is drained.
    assert evicted(run(*items, options=measured, gpu_activity={**known, "default/w-2": Decimal(0)}))
    opted_in = pools(consolidateWhenActivityUnknown=True)
    assert evicted(run(*items, options=measured, gpu_activity=known, docs=opted_in))
    assert evicted(run(*items))
