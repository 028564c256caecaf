"""What would this GPUWorkload have done? A timeline replayed through the operator's own decision step.

A timeline is a starting replica count and, per step, what a pass observed: the pods (Ready, being
deleted, phase, Ready since, GPUs, utilisation and per-pod signal values) and one-number signals
(``scalars``, keyed by metric name; ``wakeUp`` is the wake-up query). Each step is decided by
``runtime.replica_step`` exactly as a pass of the operator decides it, acting as Enforce whatever
the spec's mode: the count decided is the next step's current count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from rightsizer.adapters.kube import PodInfo
from rightsizer.adapters.metrics.base import Sample
from rightsizer.api.v1alpha1 import GPUWorkloadSpec, MetricType, WorkloadType
from rightsizer.core.errors import RightsizerError
from rightsizer.core.replicas import Recommendation
from rightsizer.core.scaling_rate import ScaleEvent
from rightsizer.core.scaling_signals import SignalReading
from rightsizer.core.timestamps import format_precise
from rightsizer.runtime import mapping
from rightsizer.runtime.replica_step import ReplicaInputs, decide_inference, gpu_metrics, pod_roles

WAKE_UP = "wakeUp"
"""The key of the wake-up query's value in a step's scalars."""


class _Strict(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TimelinePod(_Strict):
    name: str = Field(min_length=1)
    ready: bool
    deleting: bool = False
    phase: str = "Running"
    ready_since: AwareDatetime | None = None
    gpus: int = Field(default=1, ge=0)
    utilization: float | None = None
    """Mean over the pod's GPUs, percent; null: no sample (unknown, never idle)."""
    per_gpu: tuple[float, ...] | None = None
    """Each GPU's value (its busiest decides idleness); default: every GPU at ``utilization``."""
    sampled_at: AwareDatetime | None = None
    """When the utilisation was sampled (default: the step's time), so stale samples replay as stale."""
    values: dict[str, float] = Field(default_factory=dict)
    shared: bool = False
    """The pod's GPU is shared with other pods (time-slicing, MPS): its values are the device's."""

    @property
    def running(self) -> bool:
        """Holding its GPUs: not being deleted and not ended."""
        return not self.deleting and self.phase not in ("Failed", "Succeeded")


class TimelineStep(_Strict):
    at: AwareDatetime
    pods: tuple[TimelinePod, ...] = ()
    scalars: dict[str, float] = Field(default_factory=dict)


class Timeline(_Strict):
    spec: GPUWorkloadSpec
    replicas: int = Field(ge=0)
    steps: tuple[TimelineStep, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _replayable(self) -> Timeline:
        if self.spec.workload_type is not WorkloadType.INFERENCE:
            raise ValueError("spec.workloadType must be Inference: only replica decisions are replayed")
        for index, (before, after) in enumerate(zip(self.steps, self.steps[1:], strict=False)):
            if after.at <= before.at:
                raise ValueError(f"steps.{index + 1}.at must be later than steps.{index}.at")
        return self


class BadTimeline(RightsizerError):
    """A timeline that cannot be replayed; the message names the field."""


def parse_timeline(document: Any) -> Timeline:
    try:
        return Timeline.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()
        )
        raise BadTimeline(problems) from exc


@dataclass(frozen=True)
class Replayed:
    at: datetime
    current: int
    replicas: int
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": format_precise(self.at),
            "replicas": self.replicas,
            "action": self.action,
            "reason": self.reason,
        }


def replay(timeline: Timeline, interval_seconds: float, max_metric_age: timedelta) -> list[Replayed]:
    """One decision per step, from the same step the operator runs each pass."""
    spec = timeline.spec
    current = timeline.replicas
    history: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    out: list[Replayed] = []
    for step in timeline.steps:
        pods = [_pod_info(pod) for pod in step.pods]
        roles = pod_roles(pods, spec, step.at)
        samples = {
            pod.name: Sample(
                pod.utilization, pod.sampled_at or step.at, gpus=max(pod.gpus, 1), per_gpu=pod.per_gpu or ()
            )
            for pod in step.pods
            if pod.utilization is not None
        }
        shared = frozenset(pod.name for pod in step.pods if pod.shared)
        metrics, _ = gpu_metrics(samples, roles, shared, step.at, max_metric_age)
        wake = step.scalars.get(WAKE_UP) if spec.wake_up is not None else None
        inputs = ReplicaInputs(current, metrics, roles.ready, _readings(spec, step), wake, step.at)
        outcome = decide_inference(spec, inputs, history, events, interval_seconds)
        decision = outcome.decision
        # Acting as Enforce: the scale happens, so its event counts against the rate limits.
        history, events = outcome.history, outcome.scale_events
        out.append(Replayed(step.at, current, decision.replicas, str(decision.action), decision.reason))
        current = decision.replicas
    return out


def _pod_info(pod: TimelinePod) -> PodInfo:
    return PodInfo(
        name=pod.name,
        node=None,
        phase=pod.phase,
        ready=pod.ready and not pod.deleting,
        gpus=pod.gpus,
        cpu=Decimal(0),
        memory=Decimal(0),
        annotations={},
        labels={},
        deleting=pod.deleting,
        ready_since=pod.ready_since,
    )


def _readings(spec: GPUWorkloadSpec, step: TimelineStep) -> Mapping[str, SignalReading]:
    readings: dict[str, SignalReading] = {}
    for metric in spec.metrics or ():
        if metric.type is MetricType.GPU or metric.name is None:
            continue
        name = metric.name
        if metric.type is MetricType.PODS:
            per_pod = {pod.name: pod.values[name] for pod in step.pods if name in pod.values}
            readings[name] = SignalReading(name, per_pod=per_pod)
        else:
            readings[name] = SignalReading(name, value=step.scalars.get(name))
    return readings


@dataclass(frozen=True)
class Summary:
    """The replay against what ran: GPU-hours, and time above target (a proxy for latency risk)."""

    gpu_hours_ran: float
    gpu_hours_replayed: float
    minutes_above_target_ran: float | None
    minutes_above_target_replayed: float | None
    cost_saved: float | None
    currency: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpuHoursRan": round(self.gpu_hours_ran, 3),
            "gpuHoursReplayed": round(self.gpu_hours_replayed, 3),
            "minutesAboveTargetRan": _rounded(self.minutes_above_target_ran),
            "minutesAboveTargetReplayed": _rounded(self.minutes_above_target_replayed),
            "costSaved": _rounded(self.cost_saved),
            "currency": self.currency,
        }


def summarise(timeline: Timeline, decisions: Sequence[Replayed], interval_seconds: float) -> Summary:
    """Each step lasts until the next (the last one an interval). The replay's utilisation is the load
    that ran spread over the replayed replicas; without a Gpu signal there is no target to be above."""
    policy = mapping.scaling_policy(timeline.spec)
    above = policy.target_utilization * (1 + policy.tolerance_for(True)) if policy.scales_on_gpu else None
    ran_h = replayed_h = 0.0
    ran_above = replayed_above = 0.0
    times = [s.at for s in timeline.steps]
    for index, (step, decision) in enumerate(zip(timeline.steps, decisions, strict=True)):
        seconds = (times[index + 1] - step.at).total_seconds() if index + 1 < len(times) else interval_seconds
        running = [p for p in step.pods if p.running]
        per_pod = sum(max(p.gpus, 1) for p in running) / len(running) if running else 1.0
        ran_h += sum(max(p.gpus, 1) for p in running) * seconds / 3600
        replayed_h += decision.replicas * per_pod * seconds / 3600
        measured = [p for p in running if p.ready and p.utilization is not None]
        if above is None or not measured:
            continue
        mean = sum((p.utilization or 0.0) * max(p.gpus, 1) for p in measured) / sum(
            max(p.gpus, 1) for p in measured
        )
        if mean > above:
            ran_above += seconds / 60
        running_gpus = sum(max(p.gpus, 1) for p in running)
        if decision.replicas and mean * running_gpus / (decision.replicas * per_pod) > above:
            replayed_above += seconds / 60
    pricing = timeline.spec.pricing
    price = float(pricing.price_per_gpu_hour) if pricing and pricing.price_per_gpu_hour is not None else None
    return Summary(
        gpu_hours_ran=ran_h,
        gpu_hours_replayed=replayed_h,
        minutes_above_target_ran=ran_above if above is not None else None,
        minutes_above_target_replayed=replayed_above if above is not None else None,
        cost_saved=(ran_h - replayed_h) * price if price is not None else None,
        currency=str(pricing.currency) if pricing and pricing.currency else None,
    )


def _rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None
