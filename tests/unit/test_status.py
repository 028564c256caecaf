"""The GPUWorkload status is one pure function of what was observed and decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rightsizer.core.cost import PricingModel, WorkloadUsage, accrue_cost, workload_cost
from rightsizer.core.gpu_fit import GpuFit
from rightsizer.core.idle import TrainingAction, TrainingDecision
from rightsizer.core.metrics_view import Hold, HoldCode, PodUtilization, UsableMetrics
from rightsizer.core.replicas import Decision, Recommendation, ReplicaAction, ScaleEvent
from rightsizer.core.status import (
    Problem,
    WorkloadObservation,
    cost_state,
    decode_scaling_state,
    encode_scaling_state,
    idle_since,
    workload_status,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
STAMP = "2026-11-25T10:00:00Z"

METRICS = UsableMetrics(
    aggregate=90.0,
    per_pod=(
        PodUtilization("web-0", 92.04, 97.5, 2, 20000.4, 310.0, T0 - timedelta(seconds=20)),
        PodUtilization("web-1", 87.96, 87.96, 1, None, None, T0 - timedelta(seconds=10)),
    ),
    not_ready=(),
    sampled_at=T0 - timedelta(seconds=20),
    reason="2 of 2 Ready pods reported, mean 90%",
    signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE",
)
SCALE_UP = Decision(ReplicaAction.SCALE_UP, 3, 2, "util 90% > target 60% (+10% tolerance) → ceil(2*90/60)=3")


def observation(**overrides: Any) -> WorkloadObservation:
    values: dict[str, Any] = {
        "generation": 7,
        "enforce": True,
        "current_replicas": 2,
        "metrics": METRICS,
        "decision": SCALE_UP,
    }
    values.update(overrides)
    return WorkloadObservation(**values)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_status_reports_utilisation_replicas_and_the_decision() -> None:
    status = workload_status(None, observation(), T0)
    assert status["observedGeneration"] == 7
    assert status["utilization"] == {
        "aggregate": 90.0,
        "perReplica": [
            {"pod": "web-0", "percent": 92.0, "peakPercent": 97.5, "memoryUsedMiB": 20000},
            {"pod": "web-1", "percent": 88.0, "peakPercent": 88.0, "memoryUsedMiB": None},
        ],
        "peakMemoryUsedMiB": 20000,
        "sampledAt": "2026-11-25T09:59:40Z",
        "signal": "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "sharedGpu": False,
    }
    assert status["replicas"] == {"current": 2, "desired": 3}
    assert status["lastDecision"] == {
        "action": "ScaleUp",
        "replicas": 3,
        "reason": SCALE_UP.reason,
        "time": STAMP,
    }
    assert [c["type"] for c in status["conditions"]] == ["Ready", "MetricsAvailable", "Scaling", "Conflict"]
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "Ready": ("True", "Enforcing"),
        "MetricsAvailable": ("True", "MetricsFresh"),
        "Scaling": ("True", "ScaleUp"),
        "Conflict": ("False", "NoConflict"),
    }
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


def test_status_matches_the_api_model() -> None:
    from rightsizer.api.v1alpha1.workload_status import GPUWorkloadStatus

    cost = workload_cost(PricingModel(gpu_hour=Decimal(3)), WorkloadUsage(Decimal(2), Decimal("1.8")))
    accrual = accrue_cost(
        to_date=Decimal(1), per_hour=cost.per_hour, last_accrued_at=T0, now=T0, max_gap=timedelta(60)
    )
    fit = GpuFit(None, "3g.40gb", None, 40.0, 30000.0, "MIG 3g.40gb fits")
    status = workload_status(None, observation(cost=cost, accrual=accrual, gpu_fit=fit, idle_since=T0), T0)
    parsed = GPUWorkloadStatus.model_validate(status)
    assert len(parsed.conditions) == 4
    assert parsed.replicas is not None and parsed.replicas.desired == 3
    assert parsed.last_decision is not None and parsed.last_decision.action == "ScaleUp"
    assert parsed.utilization is not None and parsed.utilization.per_replica[0].memory_used_mib == 20000
    assert parsed.recommendations is not None and parsed.recommendations.mig_profile == "3g.40gb"
    assert parsed.cost is not None and parsed.cost.per_hour == Decimal(6) and parsed.cost.to_date == 1
    assert parsed.idle_since == T0
    # Every key written is one the API knows (its status model ignores, and the CRD prunes, others).
    assert set(status) <= set(parsed.to_wire()) | {k for k, v in status.items() if v is None}


def test_transition_time_kept_while_status_unchanged() -> None:
    first = workload_status(None, observation(), T0)
    later = T0 + timedelta(minutes=5)
    second = workload_status(
        first, observation(decision=Decision(ReplicaAction.NO_CHANGE, 3, 3, "ok")), later
    )
    assert condition(second, "MetricsAvailable")["lastTransitionTime"] == STAMP
    assert condition(second, "Scaling")["lastTransitionTime"] == "2026-11-25T10:05:00Z"  # True -> False
    assert condition(second, "Scaling")["reason"] == "NoChange"


def test_metrics_hold_sets_condition_and_clears_utilisation() -> None:
    held = Hold(HoldCode.PARTIAL, "only 1 of 2 Ready pods reported GPU samples; missing: web-1")
    decision = Decision(ReplicaAction.HOLD, 2, 2, f"holding at 2: {held.reason}")
    status = workload_status(None, observation(metrics=held, decision=decision), T0)
    assert status["utilization"] is None
    metrics_condition = condition(status, "MetricsAvailable")
    assert (metrics_condition["status"], metrics_condition["reason"]) == ("False", "PartialMetrics")
    assert metrics_condition["message"] == held.reason
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == (
        "False",
        "Holding",
    )
    assert condition(status, "Scaling")["reason"] == "Hold"


def test_recommend_mode_says_what_it_would_do() -> None:
    status = workload_status(None, observation(enforce=False), T0)
    scaling = condition(status, "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("False", "RecommendOnly")
    assert scaling["message"].startswith("Recommend mode: would ScaleUp from 2 to 3: util 90%")
    assert condition(status, "Ready")["reason"] == "Recommending"
    assert status["recommendations"]["replicas"] == 3
    assert status["replicas"] == {"current": 2, "desired": 3}


def test_a_target_the_operator_can_do_nothing_with_is_never_said_to_be_scaled() -> None:
    # Enforce mode, a scale-up decided, but the target (a job Kueue queues, without the RBAC for its
    # Workload) can be neither scaled nor suspended.
    status = workload_status(None, observation(target=("Job", "RecommendOnly")), T0)
    scaling = condition(status, "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("False", "RecommendOnly")
    assert scaling["message"].startswith("Job can be neither scaled nor suspended by the operator")


def test_conflict_blocks_scaling_and_keeps_the_last_decision() -> None:
    previous = workload_status(None, observation(), T0)
    status = workload_status(
        previous,
        observation(decision=None, conflict="HorizontalPodAutoscaler web scales the same Deployment"),
        T0 + timedelta(minutes=1),
    )
    assert (condition(status, "Conflict")["status"], condition(status, "Conflict")["reason"]) == (
        "True",
        "ExternalAutoscaler",
    )
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == (
        "False",
        "Conflict",
    )
    assert condition(status, "Scaling")["reason"] == "ScalingBlocked"
    assert status["lastDecision"] == previous["lastDecision"]
    assert status["replicas"] == {"current": 2, "desired": 2}


def test_problem_makes_ready_false_with_its_reason() -> None:
    problem = Problem("TargetNotFound", "Deployment web not found; check spec.targetRef")
    status = workload_status(None, observation(decision=None, problem=problem), T0)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "TargetNotFound",
        problem.message,
    )


def test_training_idle_recommendation_and_idle_since() -> None:
    since = T0 - timedelta(minutes=40)
    decision = TrainingDecision(
        TrainingAction.RECOMMEND_SUSPEND, 4, 4, since, "idle 40m: recommend suspending it"
    )
    status = workload_status(None, observation(decision=decision, idle_since=since, enforce=False), T0)
    assert status["recommendations"]["replicas"] == 0
    assert status["recommendations"]["reason"] == "suspend: idle 40m: recommend suspending it"
    assert status["idleSince"] == "2026-11-25T09:20:00Z"
    assert idle_since(status) == since
    assert condition(status, "Scaling")["reason"] == "RecommendSuspend"


def test_cost_numbers_round_for_display_but_the_total_keeps_its_precision() -> None:
    pricing = PricingModel(gpu_hour=Decimal("2.345678"))
    cost = workload_cost(pricing, WorkloadUsage(Decimal(1), Decimal("0.3")))
    accrual = accrue_cost(
        to_date=Decimal("12.5"),
        per_hour=Decimal(1),
        last_accrued_at=T0 - timedelta(seconds=30),
        now=T0,
        max_gap=timedelta(minutes=10),
    )
    previous = {"cost": {"since": "2026-11-01T00:00:00Z"}}
    status = workload_status(previous, observation(cost=cost, accrual=accrual), T0)
    assert status["cost"] == {
        "currency": "USD",
        "perHour": 2.3457,
        "toDate": 12.5083333333,
        "idlePerHour": 1.642,
        "gpuEfficiency": 0.3,
        "since": "2026-11-01T00:00:00Z",
        "lastAccruedAt": STAMP,
    }
    state = cost_state(status)
    assert state.to_date == Decimal("12.5083333333")
    assert state.per_hour == Decimal("2.3457")
    assert state.last_accrued_at == T0


def test_without_accrual_the_running_total_is_carried_forward() -> None:
    cost = workload_cost(PricingModel(gpu_hour=Decimal(1)), WorkloadUsage(Decimal(1), None))
    previous = {"cost": {"toDate": 4.25, "lastAccruedAt": STAMP, "since": STAMP}}
    status = workload_status(previous, observation(cost=cost), T0 + timedelta(minutes=1))
    assert (status["cost"]["toDate"], status["cost"]["lastAccruedAt"]) == (4.25, STAMP)


@pytest.mark.parametrize(
    "previous",
    [None, {}, {"cost": "junk"}, {"cost": {"toDate": "NaN"}}, {"cost": {"toDate": -3, "lastAccruedAt": "x"}}],
)
def test_unreadable_cost_state_starts_from_zero(previous: dict[str, Any] | None) -> None:
    state = cost_state(previous)
    assert (state.to_date, state.last_accrued_at) == (Decimal(0), None)


def test_scaling_state_round_trips() -> None:
    history = (Recommendation(T0 - timedelta(seconds=15), 3), Recommendation(T0, 2))
    events = (ScaleEvent(T0, -1),)
    assert decode_scaling_state(encode_scaling_state(history, events)) == (history, events)


@pytest.mark.parametrize(
    "text",
    [None, "", "not json", "[]", '{"recommendations": [["yesterday", 3], [1, 2]], "scaleEvents": 5}'],
)
def test_unreadable_scaling_state_is_dropped(text: str | None) -> None:
    assert decode_scaling_state(text) == ((), ())
