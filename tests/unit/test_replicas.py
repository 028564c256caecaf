"""Inference replica decisions: HPA arithmetic, windows, step limits, scale to zero and back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.metrics_view import (
    GpuSample,
    Hold,
    HoldCode,
    PodUtilization,
    UsableMetrics,
    view_metrics,
)
from rightsizer.core.replicas import (
    Decision,
    Recommendation,
    ReplicaAction,
    ReplicaOutcome,
    decide_replicas,
)
from rightsizer.core.scaling_policy import ScalingPolicy
from rightsizer.core.scaling_rate import LimitKind, RateLimit, ScaleEvent, Select, StepRule
from rightsizer.core.wording import TIMES

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
GAP = timedelta(seconds=60)
INTERVAL = timedelta(seconds=15)
NO_LIMITS = StepRule(stabilization_seconds=0)


def pods(value: int, period: int = 15) -> RateLimit:
    return RateLimit(LimitKind.PODS, value, period)


def percent(value: int, period: int = 15) -> RateLimit:
    return RateLimit(LimitKind.PERCENT, value, period)


def metrics(*percents: float, not_ready: Sequence[str] = ()) -> UsableMetrics:
    pods = tuple(PodUtilization(f"web-{i}", p, p, 1, None, None, T0) for i, p in enumerate(percents))
    aggregate = sum(percents) / len(percents)
    return UsableMetrics(aggregate, pods, tuple(not_ready), T0, "test")


def policy(**overrides: object) -> ScalingPolicy:
    values: dict[str, object] = {
        "min_replicas": 1,
        "max_replicas": 10,
        "target_utilization": 60.0,
        "scale_up": NO_LIMITS,
        "scale_down": NO_LIMITS,
    }
    values.update(overrides)
    return ScalingPolicy(**values)  # type: ignore[arg-type]


def decide(
    p: ScalingPolicy,
    current: int,
    m: UsableMetrics | Hold,
    *,
    now: datetime = T0,
    history: Sequence[Recommendation] = (),
    events: Sequence[ScaleEvent] = (),
    wake: float | None = 0.0,
) -> ReplicaOutcome:
    return decide_replicas(
        policy=p,
        current=current,
        metrics=m,
        history=history,
        scale_events=events,
        now=now,
        max_history_gap=GAP,
        wake_signal=wake,
    )


@dataclass
class Loop:
    """Runs decisions every interval and applies them, as the operator does in Enforce mode."""

    policy: ScalingPolicy
    current: int
    now: datetime = T0
    history: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    decisions: list[tuple[float, Decision]] = field(default_factory=list)

    def step(self, m: UsableMetrics | Hold, wake: float | None = 0.0) -> Decision:
        out = decide(
            self.policy, self.current, m, now=self.now, history=self.history, events=self.events, wake=wake
        )
        self.history, self.events = out.history, out.scale_events
        self.current = out.decision.replicas
        self.decisions.append(((self.now - T0).total_seconds(), out.decision))
        self.now += INTERVAL
        return out.decision

    def run(self, seconds: int, m: UsableMetrics | Hold, wake: float | None = 0.0) -> Decision:
        last = self.step(m, wake)
        while (self.now - T0).total_seconds() <= seconds:
            last = self.step(m, wake)
        return last

    def first_change_at(self, action: ReplicaAction) -> float | None:
        return next((t for t, d in self.decisions if d.action is action), None)


# --- the HPA arithmetic -------------------------------------------------------------------------


def test_scale_up_follows_the_hpa_formula_and_explains_it() -> None:
    decision = decide(policy(), 2, metrics(90, 90)).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.SCALE_UP, 3)
    assert decision.reason == f"util 90% > target 60% (+10% tolerance) → ceil(2{TIMES}90/60)=3"


@pytest.mark.parametrize(
    ("percents", "expected"),
    [
        pytest.param((90, 90), 3, id="90%-of-60%-on-2"),
        pytest.param((100, 100, 100), 5, id="100%-of-60%-on-3"),
        pytest.param((30, 30, 30, 30), 2, id="30%-of-60%-on-4"),
        pytest.param((10, 10), 1, id="10%-of-60%-on-2"),
    ],
)
def test_desired_is_ceil_of_ready_times_observed_over_target(
    percents: tuple[float, ...], expected: int
) -> None:
    # A zero scale-down window isolates the formula from stabilisation.
    assert decide(policy(), len(percents), metrics(*percents)).decision.replicas == expected


@pytest.mark.parametrize("util", [54.0, 60.0, 66.0])
def test_within_tolerance_means_no_change(util: float) -> None:
    decision = decide(policy(), 3, metrics(util, util, util)).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.NO_CHANGE, 3)
    assert "within target 60% ±10%" in decision.reason


def test_replica_arithmetic_is_exact() -> None:
    # As floats 0.4 + 79.9 + 39.7 = 120.00000000000001, which would give 3 replicas.
    decision = decide(policy(), 3, metrics(0.4, 79.9, 39.7)).decision
    assert decision.replicas == 2


@pytest.mark.parametrize(
    ("current", "percents", "expected", "words"),
    [
        pytest.param(4, (100,) * 4, 5, "capped at maxReplicas 5", id="max"),
        pytest.param(3, (1, 1, 1), 2, "raised to minimum 2", id="min"),
    ],
)
def test_recommendation_is_clamped_to_min_and_max(
    current: int, percents: tuple[float, ...], expected: int, words: str
) -> None:
    decision = decide(policy(min_replicas=2, max_replicas=5), current, metrics(*percents)).decision
    assert decision.replicas == expected
    assert words in decision.reason


@pytest.mark.parametrize(
    ("current", "expected", "action"),
    [(12, 10, ReplicaAction.SCALE_DOWN), (1, 2, ReplicaAction.SCALE_UP)],
)
def test_out_of_range_replicas_are_corrected_even_without_metrics(
    current: int, expected: int, action: ReplicaAction
) -> None:
    held = Hold(HoldCode.NO_DATA, "no data")
    decision = decide(policy(min_replicas=2, max_replicas=10), current, held).decision
    assert (decision.action, decision.replicas) == (action, expected)


def test_starting_pods_damp_a_scale_up() -> None:
    # Two Ready pods at 90% and one starting: spread over three pods the load is 60%, on target.
    decision = decide(policy(), 3, metrics(90, 90, not_ready=["web-2"])).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.NO_CHANGE, 3)
    assert "starting pods" in decision.reason


def test_starting_pods_do_not_block_a_clear_scale_up() -> None:
    decision = decide(policy(), 3, metrics(100, 100, not_ready=["web-2"])).decision
    assert decision.replicas == 4  # ceil(200/60): 200% of load over 3 pods is still above 66%


# --- missing data -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(HoldCode))
def test_unusable_metrics_hold_the_current_count(code: HoldCode) -> None:
    out = decide(policy(min_replicas=0), 4, Hold(code, "because"), wake=0.0)
    assert (out.decision.action, out.decision.replicas) == (ReplicaAction.HOLD, 4)
    assert out.decision.reason == "holding at 4: because"
    assert out.history[-1] == Recommendation(T0, 4)


def test_a_hold_inside_the_window_restarts_the_idle_run() -> None:
    loop = Loop(policy(min_replicas=0, scale_down=StepRule(stabilization_seconds=120)), current=2)
    loop.run(90, metrics(0, 0))  # idle from 0 s to 90 s
    loop.step(Hold(HoldCode.STALE, "stale"))  # at 105 s
    loop.run(600, metrics(0, 0))  # idle again from 120 s
    # Counting the idle time before the hold would have gone to zero at 120 s.
    assert loop.first_change_at(ReplicaAction.SCALE_TO_ZERO) == 240


# --- stabilisation ------------------------------------------------------------------------------


def test_scale_down_waits_for_stabilisation_window() -> None:
    loop = Loop(policy(scale_down=StepRule(stabilization_seconds=300)), current=4)
    loop.run(285, metrics(10, 10, 10, 10))
    assert loop.current == 4
    assert "scale-down waits for the 5m stabilisation window (highest recommendation in it: 4)" in (
        loop.decisions[-1][1].reason
    )
    decision = loop.step(metrics(10, 10, 10, 10))
    assert (decision.action, decision.replicas) == (ReplicaAction.SCALE_DOWN, 1)


def test_scale_down_follows_the_highest_recommendation_in_the_window() -> None:
    history = [Recommendation(T0 - timedelta(seconds=200), 6), Recommendation(T0 - timedelta(seconds=30), 5)]
    p = policy(scale_down=StepRule(stabilization_seconds=300))
    assert decide(p, 8, metrics(*(10,) * 8), history=history).decision.replicas == 6


def test_scale_up_uses_the_lowest_recommendation_in_its_window() -> None:
    p = policy(scale_up=StepRule(stabilization_seconds=60))
    history = [Recommendation(T0 - timedelta(seconds=45), 3), Recommendation(T0 - timedelta(seconds=15), 5)]
    decision = decide(p, 2, metrics(100, 100), history=history).decision
    assert decision.replicas == 3
    assert (
        "scale-up waits for the 1m stabilisation window (lowest recommendation in it: 3)" in decision.reason
    )


def test_a_fresh_start_never_scales_down_at_once() -> None:
    p = policy(scale_down=StepRule(stabilization_seconds=300))
    out = decide(p, 4, metrics(5, 5, 5, 5))
    assert out.decision.replicas == 4
    assert out.history == (Recommendation(T0, 4), Recommendation(T0, 1))


def test_a_gap_in_the_history_restarts_the_windows() -> None:
    p = policy(scale_down=StepRule(stabilization_seconds=300))
    old = [Recommendation(T0 - timedelta(seconds=s), 1) for s in range(900, 400, -15)]
    assert decide(p, 4, metrics(5, 5, 5, 5), history=old).decision.replicas == 4


def test_recommendations_from_the_future_are_ignored() -> None:
    p = policy(scale_down=StepRule(stabilization_seconds=300))
    future = [Recommendation(T0 + timedelta(hours=1), 1)]
    out = decide(p, 4, metrics(5, 5, 5, 5), history=future)
    assert out.decision.replicas == 4
    assert all(r.time <= T0 for r in out.history)


def test_history_is_pruned_to_the_longest_window_plus_one_older_record() -> None:
    p = policy(scale_down=StepRule(stabilization_seconds=60))
    history = [Recommendation(T0 - timedelta(seconds=s), 2) for s in (120, 90, 75, 45, 15)]
    out = decide(p, 2, metrics(60, 60), history=history)
    assert [int((T0 - r.time).total_seconds()) for r in out.history] == [75, 45, 15, 0]


# --- step limits --------------------------------------------------------------------------------


def test_scale_up_step_limit_counts_pods_already_added_in_the_period() -> None:
    p = policy(max_replicas=50, scale_up=StepRule(limits=(pods(4, 60),)))
    assert decide(p, 4, metrics(100, 100, 100, 100)).decision.replicas == 7  # ceil(400/60)=7 ≤ 4+4
    assert decide(p, 6, metrics(*(100,) * 6)).decision.replicas == 10  # ceil(600/60)=10 ≤ 6+4
    events = [ScaleEvent(T0 - timedelta(seconds=30), 4)]
    limited = decide(p, 6, metrics(*(100,) * 6), events=events).decision
    assert (limited.action, limited.replicas) == (ReplicaAction.NO_CHANGE, 6)
    assert "scale-up limited to 6 (at most 4 pods per 1m, 4 already added in it)" in limited.reason
    later = decide(p, 6, metrics(*(100,) * 6), now=T0 + timedelta(seconds=31), events=events).decision
    assert later.replicas == 10, "the earlier scale-up has left the period"


def test_scale_up_takes_the_larger_of_pods_and_percent_allowances() -> None:
    p = policy(max_replicas=100, scale_up=StepRule(limits=(pods(4), percent(100))))
    assert decide(p, 10, metrics(*(100,) * 10)).decision.replicas == 17  # ceil(1000/60)=17 ≤ 20
    assert decide(p, 2, metrics(100, 100)).decision.replicas == 4


def test_scale_down_step_limit() -> None:
    p = policy(scale_down=StepRule(limits=(pods(1, 60),)))
    first = decide(p, 5, metrics(*(5,) * 5)).decision
    assert first.replicas == 4
    events = [ScaleEvent(T0 - timedelta(seconds=20), -1)]
    second = decide(p, 4, metrics(*(5,) * 4), events=events).decision
    assert (second.action, second.replicas) == (ReplicaAction.NO_CHANGE, 4)
    assert "scale-down limited to 4" in second.reason


def test_scale_events_are_returned_with_the_new_change_and_pruned() -> None:
    p = policy(scale_up=StepRule(limits=(pods(10, 60),)))
    old = ScaleEvent(T0 - timedelta(seconds=600), 3)
    recent = ScaleEvent(T0 - timedelta(seconds=30), 1)
    out = decide(p, 2, metrics(90, 90), events=[old, recent])
    assert out.scale_events == (recent, ScaleEvent(T0, 1))


# --- scale to zero and back ---------------------------------------------------------------------


def zero_policy(**overrides: object) -> ScalingPolicy:
    values: dict[str, object] = {"min_replicas": 0, "scale_down": StepRule(stabilization_seconds=300)}
    values.update(overrides)
    return policy(**values)


def test_scale_to_zero_only_after_idle_window() -> None:
    loop = Loop(zero_policy(), current=2)
    loop.run(285, metrics(0, 0.5))
    assert loop.current == 2
    assert "scale to zero waits until idle for 5m" in loop.decisions[-1][1].reason
    decision = loop.step(metrics(0, 0.5))
    assert (decision.action, decision.replicas) == (ReplicaAction.SCALE_TO_ZERO, 0)
    assert decision.reason.startswith("all 2 replicas below idle threshold 1% and wake-up signal 0 ≤ 0 → 0")


def test_scale_to_zero_follows_the_wakeup_cooldown_when_shorter() -> None:
    loop = Loop(zero_policy(zero_after=timedelta(seconds=60)), current=3)
    loop.run(600, metrics(0, 0, 0))
    assert loop.first_change_at(ReplicaAction.SCALE_TO_ZERO) == 60


def test_scale_to_zero_shrinks_to_one_while_a_longer_cooldown_runs() -> None:
    loop = Loop(zero_policy(zero_after=timedelta(seconds=600)), current=3)
    loop.run(900, metrics(0, 0, 0))
    assert loop.first_change_at(ReplicaAction.SCALE_DOWN) == 300
    assert loop.first_change_at(ReplicaAction.SCALE_TO_ZERO) == 600
    assert [d.replicas for t, d in loop.decisions if t == 300] == [1]


@pytest.mark.parametrize(
    ("wake", "words"),
    [
        pytest.param(None, "wake-up signal is unavailable", id="no-wake-signal"),
        pytest.param(float("nan"), "wake-up signal is unavailable", id="nan-wake-signal"),
        pytest.param(3.0, "wake-up signal 3 > 0: not scaling to zero", id="requests-arriving"),
    ],
)
def test_idle_gpus_do_not_scale_to_zero_when_nothing_could_wake_them_or_requests_arrive(
    wake: float | None, words: str
) -> None:
    loop = Loop(zero_policy(), current=2)
    decision = loop.run(900, metrics(0, 0), wake=wake)
    assert loop.current == 1
    assert words in decision.reason


def test_starting_pods_are_never_idle() -> None:
    loop = Loop(zero_policy(), current=2)
    loop.run(900, metrics(0, not_ready=["web-1"]))
    assert loop.current >= 1
    assert loop.first_change_at(ReplicaAction.SCALE_TO_ZERO) is None


def test_scale_to_zero_respects_the_scale_down_step_limit() -> None:
    loop = Loop(zero_policy(scale_down=StepRule(stabilization_seconds=60, limits=(pods(2, 60),))), 4)
    loop.run(400, metrics(0, 0, 0, 0))
    sizes = [d.replicas for _, d in loop.decisions if d.changes_replicas]
    assert sizes == [2, 0]


def test_wakeup_from_zero() -> None:
    out = decide(zero_policy(wake_replicas=2), 0, Hold(HoldCode.NO_READY_PODS, "none"), wake=4.5)
    assert (out.decision.action, out.decision.replicas) == (ReplicaAction.WAKE_UP, 2)
    assert out.decision.reason == "wake-up signal 4.5 > threshold 0 → 2"
    assert out.scale_events == (ScaleEvent(T0, 2),)


def test_woken_workload_waits_a_full_window_before_going_back_to_zero() -> None:
    loop = Loop(zero_policy(), current=0)
    loop.step(Hold(HoldCode.NO_READY_PODS, "none"), wake=1.0)  # wakes at 0 s
    assert loop.current == 1
    loop.run(900, metrics(0), wake=0.0)  # idle from 15 s on
    assert loop.first_change_at(ReplicaAction.SCALE_TO_ZERO) == 315


@pytest.mark.parametrize(
    ("wake", "action", "words"),
    [
        pytest.param(None, ReplicaAction.HOLD, "wake-up signal is unavailable: staying at 0", id="unknown"),
        pytest.param(0.0, ReplicaAction.NO_CHANGE, "wake-up signal 0 ≤ threshold 0", id="quiet"),
    ],
)
def test_stays_at_zero_without_a_wake_signal(wake: float | None, action: ReplicaAction, words: str) -> None:
    decision = decide(zero_policy(), 0, Hold(HoldCode.NO_READY_PODS, "none"), wake=wake).decision
    assert (decision.action, decision.replicas) == (action, 0)
    assert words in decision.reason


def test_target_scaled_to_zero_by_hand_pauses_scaling() -> None:
    decision = decide(policy(min_replicas=2), 0, metrics(90)).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.HOLD, 0)
    assert "scaled to zero outside the operator" in decision.reason


# --- policy validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "minReplicas"),
        ({"max_replicas": 0, "min_replicas": 0}, "maxReplicas"),
        ({"target_utilization": 0.0}, "targetUtilization"),
        ({"target_utilization": 120.0}, "targetUtilization"),
        ({"tolerance": 1.5}, "tolerance"),
        ({"wake_replicas": 0}, "wakeReplicas"),
    ],
)
def test_contradictory_policies_are_refused_with_the_field_named(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidPolicy, match=field):
        policy(**overrides)


def test_bad_step_rules_are_refused() -> None:
    with pytest.raises(InvalidPolicy, match="stabilizationWindowSeconds"):
        StepRule(stabilization_seconds=-1)
    with pytest.raises(InvalidPolicy, match="periodSeconds"):
        pods(1, 0)
    for kind in LimitKind:
        with pytest.raises(InvalidPolicy, match="value"):
            RateLimit(kind, 0)


# --- properties ---------------------------------------------------------------------------------

percents = st.floats(min_value=0, max_value=100, allow_nan=False)
rate_limits = st.builds(RateLimit, st.sampled_from(list(LimitKind)), st.integers(1, 200), st.integers(1, 120))
step_rules = st.builds(
    StepRule,
    stabilization_seconds=st.integers(0, 600),
    limits=st.lists(rate_limits, max_size=3).map(tuple),
    select=st.sampled_from(list(Select)),
)


@st.composite
def policies(draw: st.DrawFn) -> ScalingPolicy:
    low = draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 20))
    return ScalingPolicy(
        min_replicas=low,
        max_replicas=high,
        target_utilization=draw(st.floats(min_value=1, max_value=100)),
        tolerance=draw(st.floats(min_value=0, max_value=0.5)),
        scale_up=draw(step_rules),
        scale_down=draw(step_rules),
        idle_threshold_percent=draw(st.floats(min_value=0, max_value=10)),
        wake_replicas=draw(st.integers(1, 5)),
    )


histories = st.lists(
    st.builds(
        Recommendation, st.integers(0, 900).map(lambda s: T0 - timedelta(seconds=s)), st.integers(0, 25)
    ),
    max_size=30,
)
events_strategy = st.lists(
    st.builds(ScaleEvent, st.integers(0, 300).map(lambda s: T0 - timedelta(seconds=s)), st.integers(-10, 10)),
    max_size=5,
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[ScalingPolicy, int, UsableMetrics, list[Recommendation]]:
    utils = draw(st.lists(percents, min_size=1, max_size=8))
    return draw(policies()), draw(st.integers(0, 25)), metrics(*utils), draw(histories)


@settings(max_examples=300)
@given(situations(), events_strategy, st.one_of(st.none(), st.floats(min_value=0, max_value=10)))
def test_decision_always_within_min_and_max(
    situation: tuple[ScalingPolicy, int, UsableMetrics, list[Recommendation]],
    events: list[ScaleEvent],
    wake: float | None,
) -> None:
    p, current, m, history = situation
    out = decide(p, current, m, history=history, events=events, wake=wake)
    replicas = out.decision.replicas
    if current == 0:
        assert replicas == 0 or 1 <= replicas <= p.max_replicas
    else:
        assert p.min_replicas <= replicas <= p.max_replicas
        if replicas == 0:
            assert wake is not None and wake <= p.wake_threshold
    assert all(r.time <= T0 for r in out.history)


@given(
    policies(), st.integers(1, 25), st.sampled_from(list(HoldCode)), histories, st.none() | st.floats(0, 5)
)
def test_never_scales_to_zero_on_missing_data(
    p: ScalingPolicy, current: int, code: HoldCode, history: list[Recommendation], wake: float | None
) -> None:
    out = decide(p, current, Hold(code, "missing"), history=history, wake=wake)
    if p.min_replicas <= current <= p.max_replicas:
        assert (out.decision.action, out.decision.replicas) == (ReplicaAction.HOLD, current)
    assert out.decision.replicas > 0


@given(policies(), st.integers(1, 20), st.floats(min_value=-1, max_value=1))
def test_desired_within_tolerance_means_unchanged(p: ScalingPolicy, current: int, offset: float) -> None:
    current = min(max(current, p.min_replicas, 1), p.max_replicas)
    util = p.target_utilization * (1 + offset * p.tolerance * 0.999)
    if util >= 100 or util < p.idle_threshold_percent:
        return
    decision = decide(p, current, metrics(*(util,) * current), wake=1.0).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.NO_CHANGE, current)


@given(policies(), st.integers(1, 20), st.lists(percents, min_size=1, max_size=8), events_strategy)
def test_step_limits_bound_every_change(
    p: ScalingPolicy, current: int, utils: list[float], events: list[ScaleEvent]
) -> None:
    current = min(max(current, p.min_replicas, 1), p.max_replicas)
    decision = decide(p, current, metrics(*utils), events=events, wake=1.0).decision
    change = decision.replicas - current
    if change == 0:
        return
    rule = p.scale_up if change > 0 else p.scale_down
    assert rule.select is not Select.DISABLED, decision.reason

    def allows(limit: RateLimit) -> bool:
        cutoff = T0 - limit.period
        added = sum(e.change for e in events if e.time > cutoff and e.change > 0)
        removed = sum(-e.change for e in events if e.time > cutoff and e.change < 0)
        # The period started at current - added + removed replicas; the limit counts from there.
        room = limit.value - added + removed if change > 0 else limit.value - removed + added
        return abs(change) <= room

    # Only Pods limits are checked here (Percent rounding has its own table tests): with Min every
    # one of them allows the change; with Max, when all limits are Pods, at least one does.
    pods_limits = [limit for limit in rule.limits if limit.kind is LimitKind.PODS]
    if rule.select is Select.MIN:
        assert all(allows(limit) for limit in pods_limits), decision.reason
    elif pods_limits and len(pods_limits) == len(rule.limits):
        assert any(allows(limit) for limit in pods_limits), decision.reason


# --- shared GPUs --------------------------------------------------------------------------------


def shared_metrics(*percents: float) -> UsableMetrics:
    pods = tuple(
        PodUtilization(f"web-{i}", p, p, 1, None, None, T0, shared=i == 0) for i, p in enumerate(percents)
    )
    return UsableMetrics(sum(percents) / len(percents), pods, (), T0, "test")


def test_device_level_numbers_of_a_shared_gpu_never_remove_a_replica() -> None:
    loop = Loop(zero_policy(), current=3)
    decision = loop.run(900, shared_metrics(0, 0, 0))
    assert loop.current == 3
    assert decision.action is ReplicaAction.HOLD
    assert "SharedGpu (web-0 share a GPU with other pods" in decision.reason


def test_device_level_numbers_of_a_shared_gpu_may_still_add_replicas() -> None:
    decision = decide(policy(), 2, shared_metrics(90, 90)).decision
    assert (decision.action, decision.replicas) == (ReplicaAction.SCALE_UP, 3)


# --- Ready pods without a sample: HPA's conservative fill -------------------------------------


def gated(ready: int, reported: dict[int, float], starting: Sequence[str] = ()) -> UsableMetrics | Hold:
    """What the metrics gate makes of ``ready`` Ready pods of which only ``reported`` have a sample."""
    samples = [GpuSample(f"web-{i}", percent, T0) for i, percent in reported.items()]
    return view_metrics(samples, [f"web-{i}" for i in range(ready)], starting, T0, GAP)


@pytest.mark.parametrize(
    ("ready", "reported", "target", "expected", "action"),
    [
        # 90% on two pods, one unknown: counted as 0% it is 60%, on target: kept (HPA keeps too).
        (3, {0: 90, 1: 90}, 60, 3, ReplicaAction.HOLD),
        # 100% on two pods against 50%: even with the third at 0% it is 66.7%, so up to ceil(200/50).
        (3, {0: 100, 1: 100}, 50, 4, ReplicaAction.SCALE_UP),
        # 10% on three pods, one unknown: counted as 100% it is 32.5%, still low: down to ceil(130/60).
        (4, {0: 10, 1: 10, 2: 10}, 60, 3, ReplicaAction.SCALE_DOWN),
        # 5% on one pod, two unknown: counted as 100% they make it 68.3%, over target: no scale-down.
        (3, {0: 5}, 60, 3, ReplicaAction.HOLD),
    ],
)
def test_ready_pods_without_a_sample_count_against_the_change_as_hpa_counts_them(
    ready: int, reported: dict[int, float], target: float, expected: int, action: ReplicaAction
) -> None:
    m = gated(ready, reported)
    assert isinstance(m, Hold) and m.code is HoldCode.PARTIAL, "the gate still says the data is partial"
    decision = decide(policy(target_utilization=target), ready, m).decision
    assert (decision.replicas, decision.action) == (expected, action), decision.reason
    assert "no sample: as HPA does" in decision.reason


def test_a_pod_without_a_sample_is_never_idle_so_the_workload_never_goes_to_zero() -> None:
    # Every pod that reported is idle; the unknown one counts as busy: down to 2, never to 0.
    m = gated(3, {0: 0, 1: 0})
    decision = decide(policy(min_replicas=0), 3, m).decision
    assert (decision.replicas, decision.action) == (2, ReplicaAction.SCALE_DOWN), decision.reason


def test_starting_pods_count_as_idle_against_a_scale_up_with_pods_unknown() -> None:
    # 100% on two pods, one unknown and one starting, target 60: (200 + 0 + 0) / 4 = 50%: kept.
    m = gated(3, {0: 100, 1: 100}, starting=["web-9"])
    decision = decide(policy(), 3, m).decision
    assert (decision.replicas, decision.action) == (3, ReplicaAction.HOLD), decision.reason
    assert "web-2 and starting web-9 as 0%" in decision.reason


def test_no_sample_at_all_or_a_stale_one_still_holds_everything() -> None:
    assert decide(policy(), 3, gated(3, {})).decision.action is ReplicaAction.HOLD
    stale = view_metrics([GpuSample("web-0", 100, T0 - 2 * GAP)], ["web-0", "web-1"], (), T0, GAP)
    assert isinstance(stale, Hold) and stale.partial is None
    assert decide(policy(), 2, stale).decision.action is ReplicaAction.HOLD


def test_pods_are_weighted_by_the_gpus_they_hold_as_hpa_weights_them_by_request() -> None:
    # A 4-GPU pod at 90% and a 1-GPU pod at 10%: their GPUs are 74% busy, not 50%; against 50%
    # that is ceil(2 x 74 / 50) = 3 replicas (a plain mean would keep 2).
    samples = [GpuSample("web-0", 90, T0, gpu=str(i)) for i in range(4)] + [GpuSample("web-1", 10, T0)]
    m = view_metrics(samples, ["web-0", "web-1"], (), T0, GAP)
    assert isinstance(m, UsableMetrics) and m.aggregate == 74
    decision = decide(policy(target_utilization=50), 2, m).decision
    assert (decision.replicas, decision.action) == (3, ReplicaAction.SCALE_UP), decision.reason
