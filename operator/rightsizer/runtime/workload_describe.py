"""Describe, the last step of a workload pass: status, cost, GPU-fit advice, cost annotations, events
and the operator's own metrics, from what was observed, decided and done.

Status is computed whole by ``core.status``; the cost annotations are the one write here, and they
never fail the pass (a scale it made must still be reported).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rightsizer.adapters.kube import TargetApi
from rightsizer.adapters.kube_retry import KubeApiUnavailable
from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.core.conditions import find_condition
from rightsizer.core.cost import Accrual, CostBreakdown, WorkloadUsage, accrue_cost, workload_cost
from rightsizer.core.cost_annotations import allowed_lag, annotations_are_stale
from rightsizer.core.gpu_catalog import find_gpu_model
from rightsizer.core.gpu_fit import GpuFit, recommend_gpu_fit, recommend_mig_fit
from rightsizer.core.gpu_share import gpu_share, single_mig_profile, used_gpu_share
from rightsizer.core.idle import TrainingAction, TrainingDecision
from rightsizer.core.metrics_view import Hold, HoldCode, UsableMetrics
from rightsizer.core.replicas import Decision, ReplicaAction
from rightsizer.core.status import (
    CONFLICT,
    METRICS_AVAILABLE,
    READY,
    Problem,
    WorkloadObservation,
    cost_state,
    workload_status,
)
from rightsizer.core.wording import format_money
from rightsizer.runtime import mapping
from rightsizer.runtime.events import Event
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workload_act import Acted
from rightsizer.runtime.workload_decide import WorkloadDecision
from rightsizer.runtime.workload_memory import SCALING_STATE
from rightsizer.runtime.workload_observe import Observation, WorkloadHeader

log = logging.getLogger(__name__)

COST_PER_HOUR = "rightsizer.io/cost-per-hour"
COST_TO_DATE = "rightsizer.io/cost-to-date"
GPU_EFFICIENCY = "rightsizer.io/gpu-efficiency"
CURRENCY = "rightsizer.io/currency"
MANAGED_BY = "rightsizer.io/managed-by"


@dataclass
class WorkloadResult:
    """What the caller patches onto the GPUWorkload and posts about it."""

    status: dict[str, Any]
    annotations: dict[str, str | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def describe(
    observed: Observation,
    decision: WorkloadDecision,
    acted: Acted,
    *,
    kube: TargetApi,
    settings: Settings,
    telemetry: Telemetry,
) -> WorkloadResult:
    header, now = observed.header, observed.now
    cost, accrual = _cost(observed, settings)
    status = workload_status(
        header.previous,
        WorkloadObservation(
            generation=header.generation,
            enforce=decision.enforce,
            current_replicas=observed.scale.current,
            metrics=observed.metrics,
            decision=decision.decided,
            gpu_fit=_gpu_fit(observed),
            cost=cost,
            accrual=accrual,
            conflict=observed.conflict,
            idle_since=decision.idle_since,
            target=(observed.ref.kind, observed.scale.actions),
        ),
        now,
    )
    try:
        _cost_annotations(observed, kube, status, cost.currency)
    except KubeApiUnavailable as exc:
        # The pass may have scaled already: failing it here would lose the status and event that
        # say so (the next pass finds nothing left to do). Annotations are rewritten next pass.
        telemetry.errors.inc("annotations")
        log.warning("%s/%s: cost annotations not written: %s", header.namespace, header.name, exc)
    events = [*acted.events, *_events(header.previous, status, observed.conflict, observed.metrics, acted)]
    _export(observed, decision.decided, status, telemetry)
    annotations: dict[str, str | None] = {}
    if acted.scaling_state is not None:
        annotations[SCALING_STATE] = acted.scaling_state
    return WorkloadResult(status=status, annotations=annotations, events=events)


def describe_problem(
    header: WorkloadHeader, problem: Problem, now: datetime, telemetry: Telemetry
) -> WorkloadResult:
    """A pass that decided nothing: the problem in status, and an event when it is new."""
    previous = header.previous
    observation = WorkloadObservation(
        generation=header.generation,
        enforce=False,
        current_replicas=int((previous.get("replicas") or {}).get("current") or 0),
        metrics=Hold(HoldCode.NO_DATA, problem.message),
        decision=None,
        problem=problem,
    )
    result = WorkloadResult(status=workload_status(previous, observation, now))
    if _state(previous, READY) != ("False", problem.reason):
        result.events.append(Event("Warning", problem.reason, problem.message))
    telemetry.decisions.inc("Hold", problem.reason)
    return result


def _gpu_fit(observed: Observation) -> GpuFit | None:
    history, pods = observed.fit_samples, observed.pods
    if history is None:
        return None
    per_replica = max((p.gpus for p in pods), default=0)
    product = observed.gpu_product
    model = find_gpu_model(product) if product else None
    mig = single_mig_profile([p.gpu_requests for p in pods])
    profile = model.mig_profile(mig) if model and mig else None
    hour, ten_minutes = timedelta(hours=1), timedelta(minutes=10)
    now = observed.now
    if profile is not None and model is not None:
        return recommend_mig_fit(
            samples=history, model=model, profile=profile, now=now, observation=hour,
            min_observation=ten_minutes,
        )  # fmt: skip
    if per_replica:
        return recommend_gpu_fit(
            samples=history, gpus_per_replica=per_replica, model=model, now=now, observation=hour,
            min_observation=ten_minutes,
        )  # fmt: skip
    return None


def _cost(observed: Observation, settings: Settings) -> tuple[CostBreakdown, Accrual]:
    running = observed.running
    by_node = observed.running_node_labels
    pricing, _origin = mapping.workload_pricing(
        observed.spec, observed.pool_specs, list(by_node.values()), settings.pricing
    )
    # A time-sliced GPU or a MIG slice is priced as the share of the GPU it reserves.
    shares = {p.name: gpu_share(p.gpu_requests, by_node.get(p.node or "", {})) for p in running}
    usable = observed.metrics if isinstance(observed.metrics, UsableMetrics) else None
    watts = usable.power_watts if usable else None
    usage = WorkloadUsage(
        requested_gpus=sum(shares.values(), Decimal(0)),
        used_gpu_equivalents=used_gpu_share(usable, shares) if usable else None,
        cpu_cores=sum((p.cpu for p in running), Decimal(0)),
        measured_watts=Decimal(str(round(watts, 3))) if watts is not None else None,
    )
    cost = workload_cost(pricing, usage)
    state = cost_state(observed.header.previous)
    accrual = accrue_cost(
        to_date=state.to_date,
        per_hour=state.per_hour if state.per_hour is not None else cost.per_hour,
        last_accrued_at=state.last_accrued_at,
        now=observed.now,
        max_gap=mapping.max_history_gap(settings.interval_seconds),
    )
    return cost, accrual


def _cost_annotations(
    observed: Observation, kube: TargetApi, status: Mapping[str, Any], currency: str | None
) -> None:
    cost = status.get("cost") or {}
    if not cost or currency is None:
        return
    namespace, workload = observed.header.key
    per_hour = format_money(Decimal(str(cost.get("perHour", 0))), 4)
    to_date = format_money(Decimal(str(cost.get("toDate", 0))), 4)
    eff = cost.get("gpuEfficiency")
    efficiency = format_money(Decimal(str(eff)), 3) if eff is not None else ""
    wanted = {
        COST_PER_HOUR: per_hour,
        COST_TO_DATE: to_date,
        GPU_EFFICIENCY: efficiency,
        CURRENCY: currency,
    }
    # The running total changes every pass: it is rewritten only once it lags by a few minutes of
    # spending (status has the exact figure), so a steady fleet costs no annotation writes.
    lag = allowed_lag(f"{namespace}/{workload}")
    rate = Decimal(per_hour)
    on_target = observed.scale.annotations
    if annotations_are_stale(on_target, wanted, to_date_key=COST_TO_DATE, per_hour=rate, lag=lag):
        kube.annotate_target(namespace, observed.ref, {**wanted, MANAGED_BY: "gpu-rightsizer"})
    # Pods get the same facts, cost-to-date in whole cents.
    pod_values = {
        **wanted,
        COST_TO_DATE: format_money(Decimal(str(cost.get("toDate", 0))), 2),
        WORKLOAD_ANNOTATION: workload,
    }
    for pod in observed.pods:
        if annotations_are_stale(
            pod.annotations, pod_values, to_date_key=COST_TO_DATE, per_hour=rate, lag=lag
        ):
            kube.annotate_pod(namespace, pod.name, pod_values)


def _events(
    previous: Mapping[str, Any],
    status: Mapping[str, Any],
    conflict: str | None,
    metrics: UsableMetrics | Hold,
    acted: Acted,
) -> list[Event]:
    """The events that say what changed in what the operator sees, beside what it did."""
    events: list[Event] = []
    if isinstance(metrics, Hold) and _state(previous, METRICS_AVAILABLE) != ("False", str(metrics.code)):
        events.append(Event("Warning", str(metrics.code), f"holding: {metrics.reason}"))
    if conflict and _state(previous, CONFLICT)[0] != "True":
        events.append(Event("Warning", "Conflict", f"not scaling: {conflict}"))
    last = status.get("lastDecision") or {}
    before = previous.get("lastDecision") or {}
    recommended = (last.get("action"), last.get("replicas")) != (before.get("action"), before.get("replicas"))
    # A new recommendation is worth an event only when nothing louder was said this pass.
    quiet = not acted.events and not events
    if recommended and quiet and last.get("action") not in (None, "NoChange", "Hold"):
        events.append(Event("Normal", f"Recommend{last['action']}", str(last.get("reason", ""))))
    return events


def _state(status: Mapping[str, Any], kind: str) -> tuple[object, object]:
    """A stored condition's status and reason; (None, None) when there is none."""
    condition = find_condition(status.get("conditions"), kind)
    return condition.get("status"), condition.get("reason")


def _export(
    observed: Observation,
    decision: Decision | TrainingDecision | None,
    status: Mapping[str, Any],
    t: Telemetry,
) -> None:
    namespace, name = observed.header.key
    metrics = observed.metrics
    t.workload_replicas.set(observed.scale.current, namespace, name, str(observed.spec.workload_type))
    t.metrics_unavailable.set(0 if isinstance(metrics, UsableMetrics) else 1, namespace, name)
    if isinstance(metrics, UsableMetrics):
        t.workload_gpu_utilization.set(metrics.aggregate, namespace, name)
    cost = status.get("cost") or {}
    if cost:
        currency = str(cost.get("currency", ""))
        t.workload_cost_per_hour.set(float(cost.get("perHour") or 0), namespace, name, currency)
        t.workload_cost_to_date.set(float(cost.get("toDate") or 0), namespace, name, currency)
        if cost.get("gpuEfficiency") is not None:
            t.workload_gpu_efficiency.set(float(cost["gpuEfficiency"]), namespace, name)
    if decision is not None:
        reason = str(metrics.code) if isinstance(metrics, Hold) else _reason_code(decision)
        t.decisions.inc(str(decision.action), reason)


def _reason_code(decision: Decision | TrainingDecision) -> str:
    if isinstance(decision, Decision) and decision.code:
        return decision.code
    action = decision.action
    if action in (ReplicaAction.SCALE_UP, ReplicaAction.SCALE_DOWN):
        return "UtilizationVsTarget"
    if action in (ReplicaAction.SCALE_TO_ZERO, TrainingAction.SUSPEND, TrainingAction.ANNOTATE_IDLE):
        return "Idle"
    if action == ReplicaAction.WAKE_UP:
        return "WakeUpSignal"
    return "WithinTolerance"
