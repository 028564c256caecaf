"""Training workloads: idle only on clear evidence, acted on per the idle policy, never rescaled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.idle import IdleAction, IdlePolicy, TrainingAction, TrainingDecision, decide_training
from rightsizer.core.metrics_view import Hold, HoldCode, PodUtilization, UsableMetrics

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = IdlePolicy(threshold_percent=5, idle_for=timedelta(minutes=30), action=IdleAction.SUSPEND)


def metrics(*peaks: float, not_ready: Sequence[str] = ()) -> UsableMetrics:
    pods = tuple(PodUtilization(f"train-{i}", p, p, 1, None, None, NOW) for i, p in enumerate(peaks))
    return UsableMetrics(sum(peaks) / len(peaks), pods, tuple(not_ready), NOW, "test")


def decide(
    m: UsableMetrics | Hold,
    idle_since: datetime | None = None,
    policy: IdlePolicy = POLICY,
    current: int = 4,
) -> TrainingDecision:
    return decide_training(policy=policy, current=current, metrics=m, idle_since=idle_since, now=NOW)


def test_idle_clock_starts_when_every_replica_is_below_threshold() -> None:
    decision = decide(metrics(1, 2, 0, 4))
    assert (decision.action, decision.replicas, decision.idle_since) == (TrainingAction.NO_CHANGE, 4, NOW)
    assert decision.reason == "all 4 replicas below 5% (busiest 4%) for 0s (< idleFor 30m)"


def test_idle_clock_keeps_running_across_calls() -> None:
    since = NOW - timedelta(minutes=12)
    decision = decide(metrics(1, 1, 1, 1), idle_since=since)
    assert decision.idle_since == since
    assert "for 12m (< idleFor 30m)" in decision.reason


@pytest.mark.parametrize(
    ("action", "expected", "replicas", "words"),
    [
        (IdleAction.RECOMMEND, TrainingAction.RECOMMEND_SUSPEND, 4, "recommend suspending it"),
        (IdleAction.ANNOTATE, TrainingAction.ANNOTATE_IDLE, 4, "annotating it as idle"),
        (IdleAction.SUSPEND, TrainingAction.SUSPEND, 0, "suspending it"),
    ],
)
def test_idle_for_the_idle_duration_acts_per_policy(
    action: IdleAction, expected: TrainingAction, replicas: int, words: str
) -> None:
    policy = IdlePolicy(threshold_percent=5, idle_for=timedelta(minutes=30), action=action)
    decision = decide(metrics(0, 0, 1, 2), idle_since=NOW - timedelta(minutes=30), policy=policy)
    assert (decision.action, decision.replicas) == (expected, replicas)
    assert decision.reason.endswith(f"for 30m (>= idleFor 30m): {words}")


def test_training_never_rescaled_when_busy() -> None:
    decision = decide(metrics(0, 0, 0, 40), idle_since=NOW - timedelta(hours=5))
    assert (decision.action, decision.replicas, decision.idle_since) == (TrainingAction.NO_CHANGE, 4, None)
    assert decision.reason == "busy: train-3 at 40% >= idle threshold 5%"


def test_one_busy_gpu_makes_a_multi_gpu_replica_busy() -> None:
    pod = PodUtilization(
        "train-0", 3, peak_gpu_percent=60, gpus=8, memory_used_mib=None, power_watts=None, sampled_at=NOW
    )
    m = UsableMetrics(3, (pod,), (), NOW, "test")
    assert decide(m, idle_since=NOW - timedelta(hours=1)).action is TrainingAction.NO_CHANGE


def test_not_ready_pods_never_idle() -> None:
    decision = decide(metrics(0, 0, not_ready=["train-2", "train-3"]), idle_since=NOW - timedelta(hours=2))
    assert (decision.action, decision.replicas, decision.idle_since) == (TrainingAction.NO_CHANGE, 4, None)
    assert "2 replicas not Ready yet (train-2, train-3): a starting job is not idle" in decision.reason


@pytest.mark.parametrize("code", list(HoldCode))
def test_unusable_metrics_hold_and_restart_the_idle_clock(code: HoldCode) -> None:
    decision = decide(Hold(code, "no samples"), idle_since=NOW - timedelta(hours=2))
    assert (decision.action, decision.replicas, decision.idle_since) == (TrainingAction.HOLD, 4, None)
    assert decision.reason == "no samples; idle clock restarted, nothing changed"


def test_idle_since_in_the_future_restarts_the_clock() -> None:
    decision = decide(metrics(0), idle_since=NOW + timedelta(hours=1))
    assert decision.idle_since == NOW
    assert decision.action is TrainingAction.NO_CHANGE


def test_workload_without_replicas_is_left_alone() -> None:
    decision = decide(metrics(0), idle_since=NOW - timedelta(days=1), current=0)
    assert (decision.action, decision.replicas, decision.idle_since) == (TrainingAction.NO_CHANGE, 0, None)


@pytest.mark.parametrize(
    ("threshold", "idle_for"), [(0, timedelta(minutes=5)), (101, timedelta(minutes=5)), (5, timedelta(0))]
)
def test_bad_idle_policies_are_refused(threshold: float, idle_for: timedelta) -> None:
    with pytest.raises(InvalidPolicy):
        IdlePolicy(threshold_percent=threshold, idle_for=idle_for, action=IdleAction.RECOMMEND)


@given(
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(0, 10_000).map(lambda s: NOW - timedelta(seconds=s))),
    st.sampled_from(list(IdleAction)),
)
def test_replicas_change_only_by_suspending_an_idle_workload(
    peaks: list[float], since: datetime | None, action: IdleAction
) -> None:
    policy = IdlePolicy(threshold_percent=5, idle_for=timedelta(minutes=30), action=action)
    decision = decide(metrics(*peaks), idle_since=since, policy=policy, current=len(peaks))
    if decision.replicas != len(peaks):
        assert decision.action is TrainingAction.SUSPEND and decision.replicas == 0
        assert max(peaks) < 5
        assert since is not None and NOW - since >= timedelta(minutes=30)
