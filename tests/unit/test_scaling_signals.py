"""Request-based signals next to GPU utilisation: HPA's Pods, Object and External arithmetic, the
largest count winning, and what a signal that cannot be read may still allow."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.core.metrics_view import Hold, HoldCode, PodUtilization, UsableMetrics
from rightsizer.core.replicas import ReplicaAction, ReplicaOutcome, decide_replicas
from rightsizer.core.scaling_policy import ScalingPolicy
from rightsizer.core.scaling_rate import StepRule
from rightsizer.core.scaling_signals import (
    SignalKind,
    SignalReading,
    SignalTarget,
    Situation,
    TargetKind,
    propose,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WAITING = SignalTarget("requestsWaiting", SignalKind.PODS, TargetKind.AVERAGE_VALUE, 5)
QUEUE = SignalTarget("queueSeconds", SignalKind.EXTERNAL, TargetKind.VALUE, 0.5)
RATE = SignalTarget("requestRate", SignalKind.OBJECT, TargetKind.AVERAGE_VALUE, 20)
PODS = ("chat-0", "chat-1", "chat-2", "chat-3")


def at(current: int = 4, counted: tuple[str, ...] = PODS, floor: int = 1, ceiling: int = 20) -> Situation:
    return Situation(current, counted, (0.1, 0.1), floor, ceiling)


def per_pod(*values: float) -> SignalReading:
    return SignalReading(WAITING.name, per_pod=dict(zip(PODS, values, strict=False)))


@pytest.mark.parametrize(
    ("signal", "reading", "replicas"),
    [
        pytest.param(WAITING, per_pod(10, 10, 10, 10), 8, id="pods-twice-the-target-doubles"),
        pytest.param(WAITING, per_pod(5, 5.2, 4.8, 5.3), 4, id="pods-within-tolerance"),
        pytest.param(WAITING, per_pod(1, 1, 1, 1), 1, id="pods-few-waiting-shrinks"),
        pytest.param(WAITING, per_pod(0, 0, 0, 0), 1, id="pods-none-waiting-keeps-the-floor"),
        # One pod without a value counts 0 against a scale-up: 30/4 = 7.5 per pod, still up.
        pytest.param(WAITING, per_pod(10, 10, 10), 6, id="pods-missing-counts-0-against-up"),
        # ...and as the target against a scale-down: (1+1+1+5)/4 = 2 per pod, still down.
        pytest.param(WAITING, per_pod(1, 1, 1), 2, id="pods-missing-counts-target-against-down"),
        # 6 per pod on three, filled with 0: 18/4 = 4.5, within tolerance of 5 → no change.
        pytest.param(WAITING, per_pod(6, 6, 6), 4, id="pods-fill-cancels-a-small-up"),
        pytest.param(QUEUE, SignalReading(QUEUE.name, value=1.0), 8, id="external-value-scales-ready"),
        pytest.param(QUEUE, SignalReading(QUEUE.name, value=0.52), 4, id="external-value-within-tolerance"),
        pytest.param(RATE, SignalReading(RATE.name, value=130), 7, id="object-average-value"),
        pytest.param(RATE, SignalReading(RATE.name, value=1000), 20, id="capped-at-max"),
    ],
)
def test_each_signal_proposes_hpas_count(signal: SignalTarget, reading: SignalReading, replicas: int) -> None:
    assert propose(signal, reading, at()).replicas == replicas


@pytest.mark.parametrize(
    "reading",
    [
        None,
        SignalReading(QUEUE.name, problem="Prometheus timed out"),
        SignalReading(QUEUE.name, value=None),
        SignalReading(QUEUE.name, value=math.nan),
        SignalReading(QUEUE.name, value=-1.0),
        SignalReading(QUEUE.name, value=math.inf),
    ],
    ids=["not-read", "error", "no-series", "nan", "negative", "infinite"],
)
def test_an_unreadable_signal_proposes_nothing_and_says_why(reading: SignalReading | None) -> None:
    proposal = propose(QUEUE, reading, at())
    assert proposal.replicas is None
    assert proposal.reason.startswith("queueSeconds: ")


def test_a_pods_signal_with_no_counted_value_is_unreadable() -> None:
    other = SignalReading(WAITING.name, per_pod={"someone-else": 50.0})
    assert propose(WAITING, other, at()).replicas is None
    assert propose(WAITING, per_pod(10, math.nan, 10, 10), at()).replicas is None


def gpu(*percents: float) -> UsableMetrics:
    pods = tuple(PodUtilization(PODS[i], p, p, 1, None, None, T0) for i, p in enumerate(percents))
    return UsableMetrics(sum(percents) / len(percents), pods, (), T0, "test")


def policy(*signals: SignalTarget, on_gpu: bool = True, min_replicas: int = 1) -> ScalingPolicy:
    free = StepRule(0)
    return ScalingPolicy(
        min_replicas=min_replicas,
        max_replicas=20,
        target_utilization=60,
        scale_up=free,
        scale_down=free,
        scales_on_gpu=on_gpu,
        signals=signals,
    )


def decide(
    p: ScalingPolicy,
    metrics: UsableMetrics | Hold,
    *readings: SignalReading,
    current: int = 4,
    wake: float | None = 0.0,
) -> ReplicaOutcome:
    return decide_replicas(
        policy=p,
        current=current,
        metrics=metrics,
        history=(),
        scale_events=(),
        now=T0,
        max_history_gap=timedelta(seconds=60),
        wake_signal=wake,
        readings={r.name: r for r in readings},
        ready_pods=PODS[:current],
    )


def test_requests_waiting_scale_up_while_gpu_utilisation_stays_on_target() -> None:
    out = decide(policy(WAITING), gpu(60, 60, 60, 60), per_pod(10, 10, 10, 10)).decision
    assert (out.action, out.replicas) == (ReplicaAction.SCALE_UP, 8)
    assert out.reason.startswith("largest of 2 signals: requestsWaiting → 8")


def test_the_largest_proposal_wins() -> None:
    out = decide(policy(WAITING, QUEUE), gpu(90, 90, 90, 90), per_pod(6, 6, 6, 6)).decision
    assert out.replicas == 6  # GPU: ceil(4 x 90 / 60) = 6; waiting: ceil(24/5) = 5
    out = decide(
        policy(WAITING, QUEUE), gpu(90, 90, 90, 90), per_pod(6, 6, 6, 6), SignalReading(QUEUE.name, value=2)
    ).decision
    assert out.replicas == 16  # queue time 4x its target: ceil(4 x 2 / 0.5)


def test_an_unreadable_signal_is_left_out_of_a_scale_up() -> None:
    broken = SignalReading(QUEUE.name, problem="Prometheus timed out")
    out = decide(policy(WAITING, QUEUE), gpu(60, 60, 60, 60), per_pod(10, 10, 10, 10), broken).decision
    assert out.replicas == 8
    assert "queueSeconds: Prometheus timed out" in out.reason


def test_an_unreadable_signal_blocks_a_scale_down() -> None:
    broken = SignalReading(QUEUE.name, problem="Prometheus timed out")
    out = decide(policy(WAITING, QUEUE), gpu(10, 10, 10, 10), per_pod(1, 1, 1, 1), broken).decision
    assert (out.action, out.replicas) == (ReplicaAction.NO_CHANGE, 4)
    assert "queueSeconds unreadable, which blocks a scale-down → keep 4" in out.reason


def test_gpu_data_missing_no_longer_stops_a_request_signal_scaling_up() -> None:
    no_gpu = Hold(HoldCode.NO_DATA, "no sample for any Ready pod")
    up = decide(policy(WAITING), no_gpu, per_pod(10, 10, 10, 10)).decision
    assert up.replicas == 8
    down = decide(policy(WAITING), no_gpu, per_pod(1, 1, 1, 1)).decision
    assert (down.action, down.replicas) == (ReplicaAction.NO_CHANGE, 4)


def test_nothing_readable_holds() -> None:
    no_gpu = Hold(HoldCode.NO_DATA, "no sample for any Ready pod")
    out = decide(policy(WAITING), no_gpu, SignalReading(WAITING.name, problem="timed out")).decision
    assert (out.action, out.replicas) == (ReplicaAction.HOLD, 4)
    assert out.reason.startswith("holding at 4: no signal could be read")


def test_without_a_gpu_metric_gpu_utilisation_decides_nothing() -> None:
    requests_only = policy(WAITING, on_gpu=False)
    out = decide(requests_only, gpu(100, 100, 100, 100), per_pod(5, 5, 5, 5)).decision
    assert (out.action, out.replicas) == (ReplicaAction.NO_CHANGE, 4)
    held = decide(requests_only, Hold(HoldCode.NO_DATA, "none"), per_pod(1, 1, 1, 1)).decision
    assert held.replicas == 1


@pytest.mark.parametrize(("wake", "replicas"), [(0.0, 0), (None, 1), (9.0, 1)])
def test_requests_alone_reach_zero_only_with_a_quiet_wake_up_signal(
    wake: float | None, replicas: int
) -> None:
    requests_only = policy(WAITING, on_gpu=False, min_replicas=0)
    p = ScalingPolicy(**{**requests_only.__dict__, "zero_after": timedelta(0)})
    out = decide(p, Hold(HoldCode.NO_DATA, "none"), per_pod(0, 0, 0, 0), wake=wake).decision
    assert out.replicas == replicas, out.reason
