"""The GPUWorkload status, computed in one place from what was observed and decided.

Status is never patched piecemeal: every reconcile computes the whole status from the
observation and the previous status (only to keep condition transition times, the cost
accumulator and ``since``). The result is a camelCase dict shaped like the API's
``GPUWorkloadStatus``.

Conventions:
- Keys are always present; ``None`` means "not known now" and, sent as a merge patch, clears
  a stale value (a held workload shows no utilisation rather than an old number).
- Money and percentages are JSON numbers, as the CRD declares them. Rates are rounded to 4
  decimals for display; ``toDate`` keeps 10 decimals because it is read back and added to on
  every reconcile, and rounding it each time would drift (1/120 of a dollar per 30 s interval
  rounds down by 0.00003 every time).
- Times are RFC 3339 UTC strings (``2026-11-25T10:00:00Z``), as Kubernetes writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from rightsizer.core.conditions import ConditionState, merge_conditions
from rightsizer.core.cost import Accrual, CostBreakdown
from rightsizer.core.gpu_fit import GpuFit
from rightsizer.core.idle import TrainingAction, TrainingDecision
from rightsizer.core.metrics_view import Hold, UsableMetrics
from rightsizer.core.replicas import Recommendation, ReplicaAction
from rightsizer.core.scaling_rate import ScaleEvent
from rightsizer.core.timestamps import format_time, parse_time
from rightsizer.core.wording import format_money, stored_number

READY = "Ready"
METRICS_AVAILABLE = "MetricsAvailable"
SCALING = "Scaling"
# What status.target says of a target the operator can neither scale nor suspend, and the Scaling
# condition's reason whenever a decision is only a recommendation.
RECOMMEND_ONLY = "RecommendOnly"
CONFLICT = "Conflict"

_RATE_PLACES = 4
_ACCUMULATOR_PLACES = 10


class AnyDecision(Protocol):
    """What inference (``replicas.Decision``) and training decisions have in common."""

    @property
    def action(self) -> str: ...

    @property
    def replicas(self) -> int: ...

    @property
    def current(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def changes_replicas(self) -> bool: ...


@dataclass(frozen=True)
class Problem:
    """Something that stops the operator from managing the workload (shown as Ready=False)."""

    reason: str
    """CamelCase, e.g. TargetNotFound."""
    message: str


@dataclass(frozen=True)
class WorkloadObservation:
    generation: int
    enforce: bool
    current_replicas: int
    metrics: UsableMetrics | Hold
    decision: AnyDecision | None
    """None when nothing was decided (a conflict or problem); the last decision is kept."""
    gpu_fit: GpuFit | None = None
    cost: CostBreakdown | None = None
    accrual: Accrual | None = None
    conflict: str | None = None
    """Why another autoscaler owns the target (e.g. "HorizontalPodAutoscaler web targets it")."""
    problem: Problem | None = None
    idle_since: datetime | None = None
    target: tuple[str, str] | None = None
    """The target's kind and what the operator can do with it (e.g. "Scale,Suspend"); None: as stored."""


def workload_status(
    previous: Mapping[str, Any] | None, observed: WorkloadObservation, now: datetime
) -> dict[str, Any]:
    """The complete status for ``observed``; ``previous`` is the status currently stored."""
    previous = previous or {}
    decision = observed.decision
    last_decision = previous.get("lastDecision")
    if decision is not None:
        last_decision = {
            "action": str(decision.action),
            "replicas": decision.replicas,
            "reason": decision.reason,
            "time": format_time(now),
        }
    return {
        "observedGeneration": observed.generation,
        "conditions": _conditions(previous.get("conditions"), observed, now),
        "utilization": _utilization(observed.metrics),
        "replicas": {
            "current": observed.current_replicas,
            "desired": decision.replicas if decision is not None else observed.current_replicas,
        },
        "lastDecision": last_decision,
        "recommendations": _recommendations(decision, observed.gpu_fit),
        "cost": _cost(previous.get("cost"), observed.cost, observed.accrual, now),
        "idleSince": format_time(observed.idle_since) if observed.idle_since else None,
        "target": (
            {"kind": observed.target[0], "actions": observed.target[1]}
            if observed.target is not None
            else previous.get("target")
        ),
    }


# --- conditions ---------------------------------------------------------------------------------


def _conditions(previous: Any, observed: WorkloadObservation, now: datetime) -> list[dict[str, Any]]:
    wanted = (
        ConditionState(READY, *_ready(observed)),
        ConditionState(METRICS_AVAILABLE, *_metrics_available(observed.metrics)),
        ConditionState(SCALING, *_scaling(observed)),
        ConditionState(CONFLICT, *_conflict(observed.conflict)),
    )
    return merge_conditions(previous, wanted, now, observed.generation)


def _ready(observed: WorkloadObservation) -> tuple[bool, str, str]:
    if observed.problem is not None:
        return False, observed.problem.reason, observed.problem.message
    if observed.conflict is not None:
        return False, "Conflict", f"not scaling: {observed.conflict}"
    decision = observed.decision
    if decision is None:
        return False, "NoDecision", "nothing was decided yet"
    if decision.action in (ReplicaAction.HOLD, TrainingAction.HOLD):
        return False, "Holding", decision.reason
    return True, "Enforcing" if observed.enforce else "Recommending", decision.reason


def _metrics_available(metrics: UsableMetrics | Hold) -> tuple[bool, str, str]:
    if isinstance(metrics, Hold):
        return False, str(metrics.code), metrics.reason
    return True, "MetricsFresh", metrics.reason


def _scaling(observed: WorkloadObservation) -> tuple[bool, str, str]:
    decision = observed.decision
    blocked = observed.problem.message if observed.problem else observed.conflict
    if blocked is not None:
        return False, "ScalingBlocked", blocked
    if decision is None:
        return False, "NoDecision", "nothing was decided yet"
    if not decision.changes_replicas:
        return False, str(decision.action), decision.reason
    if observed.target is not None and observed.target[1] == RECOMMEND_ONLY:
        kind = observed.target[0]
        return (
            False,
            RECOMMEND_ONLY,
            f"{kind} can be neither scaled nor suspended by the operator: would {decision.action} from "
            f"{decision.current} to {decision.replicas}: {decision.reason}",
        )
    if not observed.enforce:
        return (
            False,
            RECOMMEND_ONLY,
            (
                f"Recommend mode: would {decision.action} from {decision.current} to {decision.replicas}: "
                f"{decision.reason}"
            ),
        )
    return True, str(decision.action), decision.reason


def _conflict(conflict: str | None) -> tuple[bool, str, str]:
    if conflict is None:
        return False, "NoConflict", "no other autoscaler manages the target"
    return True, "ExternalAutoscaler", conflict


# --- sections -----------------------------------------------------------------------------------


def _utilization(metrics: UsableMetrics | Hold) -> dict[str, Any] | None:
    if isinstance(metrics, Hold):
        return None
    memories = [pod.memory_used_mib for pod in metrics.per_pod if pod.memory_used_mib is not None]
    return {
        "aggregate": round(metrics.aggregate, 1),
        "perReplica": [
            {
                "pod": pod.pod,
                "percent": round(pod.percent, 1),
                "peakPercent": round(pod.peak_gpu_percent, 1),
                "memoryUsedMiB": round(pod.memory_used_mib) if pod.memory_used_mib is not None else None,
            }
            for pod in metrics.per_pod
        ],
        "peakMemoryUsedMiB": round(max(memories)) if memories else None,
        "sampledAt": format_time(metrics.sampled_at),
        "signal": metrics.signal,
        "sharedGpu": bool(metrics.shared_pods),
    }


_IDLE_ACTIONS = (TrainingAction.RECOMMEND_SUSPEND, TrainingAction.ANNOTATE_IDLE, TrainingAction.SUSPEND)


def _recommendations(decision: AnyDecision | None, fit: GpuFit | None) -> dict[str, Any] | None:
    replicas: int | None = None
    reasons = []
    if isinstance(decision, TrainingDecision):
        if decision.action in _IDLE_ACTIONS:
            replicas = 0
            reasons.append(f"suspend: {decision.reason}")
    elif decision is not None and decision.action not in (ReplicaAction.HOLD,):
        replicas = decision.replicas
        reasons.append(f"replicas: {decision.reason}")
    if fit is not None:
        reasons.append(f"GPUs: {fit.reason}")
    if replicas is None and fit is None:
        return None
    return {
        "replicas": replicas,
        "gpusPerReplica": fit.gpus_per_replica if fit else None,
        "gpuModel": fit.gpu_model if fit else None,
        "migProfile": fit.mig_profile if fit else None,
        "reason": "; ".join(reasons),
    }


def _cost(
    previous: Any, cost: CostBreakdown | None, accrual: Accrual | None, now: datetime
) -> dict[str, Any] | None:
    if cost is None:
        return None
    earlier = previous if isinstance(previous, Mapping) else {}
    since = earlier.get("since")
    if accrual is not None:
        to_date: int | float = money_number(accrual.to_date, _ACCUMULATOR_PLACES)
        accrued_at: str | None = format_time(accrual.accrued_at)
    else:
        # Nothing accrued this time: carry the running total forward untouched.
        kept = cost_state({"cost": earlier})
        to_date = money_number(kept.to_date, _ACCUMULATOR_PLACES)
        accrued_at = format_time(kept.last_accrued_at) if kept.last_accrued_at else None
    return {
        "currency": cost.currency,
        "perHour": money_number(cost.per_hour),
        "toDate": to_date,
        "idlePerHour": money_number(cost.idle_per_hour) if cost.idle_per_hour is not None else None,
        "gpuEfficiency": money_number(cost.gpu_efficiency) if cost.gpu_efficiency is not None else None,
        "since": since if isinstance(since, str) else format_time(now),
        "lastAccruedAt": accrued_at,
    }


def money_number(value: Decimal, places: int = _RATE_PLACES) -> int | float:
    """A Decimal as the JSON number the CRD stores, rounded to ``places``; whole numbers stay ints."""
    rounded = Decimal(format_money(value, places))
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


# --- reading state back from the previous status ------------------------------------------------


@dataclass(frozen=True)
class CostState:
    to_date: Decimal
    per_hour: Decimal | None
    last_accrued_at: datetime | None


def cost_state(previous: Mapping[str, Any] | None) -> CostState:
    """The accumulator and last rate stored in a previous status (zeros when there is none)."""
    cost = (previous or {}).get("cost")
    if not isinstance(cost, Mapping):
        return CostState(Decimal(0), None, None)
    to_date = stored_number(cost.get("toDate"))
    return CostState(
        to_date if to_date is not None and to_date >= 0 else Decimal(0),
        stored_number(cost.get("perHour")),
        parse_time(cost.get("lastAccruedAt")),
    )


def idle_since(previous: Mapping[str, Any] | None) -> datetime | None:
    return parse_time((previous or {}).get("idleSince"))


# --- scaling state ------------------------------------------------------------------------------


def encode_scaling_state(history: Sequence[Recommendation], events: Sequence[ScaleEvent]) -> str:
    """The recommendation history and scale events as compact JSON (for an annotation).

    Kept on the object so a restarted operator resumes the same stabilisation windows.
    """
    return json.dumps(
        {
            "recommendations": [[format_time(r.time), r.replicas] for r in history],
            "scaleEvents": [[format_time(e.time), e.change] for e in events],
        },
        separators=(",", ":"),
    )


def decode_scaling_state(text: str | None) -> tuple[tuple[Recommendation, ...], tuple[ScaleEvent, ...]]:
    """Read :func:`encode_scaling_state` output; unreadable parts are dropped.

    Dropping is safe: an empty history restarts the windows from the current replica count,
    which delays scale-down, never hastens it.
    """
    if not text:
        return (), ()
    try:
        data = json.loads(text)
    except ValueError:
        return (), ()
    if not isinstance(data, Mapping):
        return (), ()
    history = tuple(
        Recommendation(time, count) for time, count in _pairs(data.get("recommendations")) if count >= 0
    )
    events = tuple(ScaleEvent(time, change) for time, change in _pairs(data.get("scaleEvents")))
    return history, events


def _pairs(raw: object) -> list[tuple[datetime, int]]:
    if not isinstance(raw, list):
        return []
    pairs = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            continue
        time, number = parse_time(item[0]), item[1]
        if time is not None and isinstance(number, int) and not isinstance(number, bool):
            pairs.append((time, number))
    return pairs
