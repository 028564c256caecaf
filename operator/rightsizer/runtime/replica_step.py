"""One inference decision from what a pass observed: the step the operator runs every interval and
``rightsizer backtest`` replays over a recorded or past timeline, so a replay is the operator's own
arithmetic and never a second implementation of it.

Observing (the API server, Prometheus) and acting (``/scale``, events) stay with the callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rightsizer.adapters.kube import PodInfo
from rightsizer.adapters.metrics.base import PodSamples
from rightsizer.api.v1alpha1 import GPUWorkloadSpec
from rightsizer.core.metrics_view import GpuSample, Hold, UsableMetrics, view_metrics
from rightsizer.core.replicas import Recommendation, ReplicaOutcome, decide_replicas
from rightsizer.core.scaling_rate import ScaleEvent
from rightsizer.core.scaling_signals import SignalReading
from rightsizer.runtime import mapping


@dataclass(frozen=True)
class PodRoles:
    """Which pods a decision measures: Ready ones (past the readiness delay) and starting ones."""

    ready: list[str]
    starting: list[str]


def pod_roles(pods: Sequence[PodInfo], spec: GPUWorkloadSpec, now: datetime) -> PodRoles:
    # A pod Ready for less than the warm-up counts as starting: neither busy nor idle yet.
    warm_up = timedelta(seconds=spec.initial_readiness_delay_seconds)
    return PodRoles(
        ready=[p.name for p in pods if p.ready and not p.warming(now, warm_up)],
        starting=[p.name for p in pods if p.starting or p.warming(now, warm_up)],
    )


def to_gpu_samples(samples: PodSamples, on_shared_gpus: frozenset[str] = frozenset()) -> list[GpuSample]:
    """The adapter's per-pod summaries as per-GPU samples: each GPU keeps its own value, so one busy
    GPU of eight keeps its pod busy (a source without per-GPU detail gives each GPU the mean). A pod
    is on a shared GPU when the source saw it share one, or when it holds a time-sliced replica."""
    out: list[GpuSample] = []
    for pod, s in samples.items():
        gpus = max(s.gpus, 1)
        values = s.per_gpu if len(s.per_gpu) == gpus else (s.value,) * gpus
        power = s.power_watts / gpus if s.power_watts is not None else None
        shared = s.shared or pod in on_shared_gpus
        for i, value in enumerate(values):
            out.append(
                GpuSample(pod, value, s.timestamp, str(i), s.memory_used_mib, power, s.signal or "", shared)
            )
    return out


def gpu_metrics(
    samples: PodSamples, roles: PodRoles, on_shared: frozenset[str], now: datetime, max_age: timedelta
) -> tuple[UsableMetrics | Hold, list[GpuSample]]:
    """The pods' GPU samples judged: usable, or why not (stale, missing, out of range)."""
    gpu_samples = to_gpu_samples(samples, on_shared)
    return view_metrics(gpu_samples, roles.ready, roles.starting, now, max_age), gpu_samples


@dataclass(frozen=True)
class ReplicaInputs:
    """Everything one decision depends on besides the spec and the windows' state."""

    current: int
    metrics: UsableMetrics | Hold
    ready: Sequence[str]
    readings: Mapping[str, SignalReading]
    wake_signal: float | None
    now: datetime


def decide_inference(
    spec: GPUWorkloadSpec,
    inputs: ReplicaInputs,
    history: Sequence[Recommendation],
    events: Sequence[ScaleEvent],
    interval_seconds: float,
) -> ReplicaOutcome:
    return decide_replicas(
        policy=mapping.scaling_policy(spec),
        current=inputs.current,
        metrics=inputs.metrics,
        history=history,
        scale_events=events,
        now=inputs.now,
        max_history_gap=mapping.max_history_gap(interval_seconds),
        wake_signal=inputs.wake_signal,
        readings=inputs.readings,
        ready_pods=inputs.ready,
    )
