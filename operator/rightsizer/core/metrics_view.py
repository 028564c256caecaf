"""A view of GPU utilisation samples, and the gate that decides whether they are fit to act on.

Every decision about a workload starts here. The rule is "never act on partial data": a pod
whose series is missing is *unknown*, not idle, so missing, stale, NaN or out-of-range samples,
or samples that cover fewer than all Ready pods, give a :class:`Hold` instead of numbers. A hold
for pods without a series still carries what the others reported (``Hold.partial``): replica
decisions may use it the way HPA does, counting each missing pod as whatever argues against the
change (see core.replicas); nothing else (idle verdicts, cost, advice) does.
Pods that are not Ready yet are neither idle nor busy: their samples are left out and they are
listed separately so callers can treat a starting workload as such.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from rightsizer.api.durations import format_duration
from rightsizer.core.wording import format_percent


class HoldCode(StrEnum):
    """Why the samples cannot be used; doubles as the MetricsAvailable condition reason."""

    NO_READY_PODS = "NoReadyPods"
    NO_DATA = "NoMetrics"
    INVALID = "InvalidMetrics"
    STALE = "StaleMetrics"
    PARTIAL = "PartialMetrics"


# GPU activity (percent) at or below which a GPU counts as idle wherever no policy says otherwise:
# consolidation, pool status and GPU-fit advice.
IDLE_GPU_PERCENT = Decimal(5)


@dataclass(frozen=True)
class GpuSample:
    """One GPU's latest reading, attributed to the pod that holds the GPU.

    ``percent`` is utilisation 0-100 (a 0-1 ratio such as DCGM_FI_PROF_GR_ENGINE_ACTIVE must
    be scaled by the adapter). ``gpu`` tells apart the GPUs of a multi-GPU pod (UUID or index).
    Timestamps are timezone-aware.
    """

    pod: str
    percent: float
    timestamp: datetime
    gpu: str = ""
    memory_used_mib: float | None = None
    power_watts: float | None = None
    signal: str = ""
    """The DCGM field read, when the source says (Auto resolves per GPU)."""
    shared: bool = False
    """The GPU is shared with other pods (time-slicing, MPS): ``percent`` is the device's."""


@dataclass(frozen=True)
class PodUtilization:
    """One Ready pod, summarised over its GPUs."""

    pod: str
    percent: float
    """Mean over the pod's GPUs: the pod's share of load, as HPA averages per pod."""
    peak_gpu_percent: float
    """Busiest GPU of the pod: a pod is idle only when every one of its GPUs is."""
    gpus: int
    memory_used_mib: float | None
    """Largest per-GPU memory in use: the tightest GPU decides whether a smaller one fits."""
    power_watts: float | None
    """Sum over the pod's GPUs; None unless every GPU reported power."""
    sampled_at: datetime
    shared: bool = False
    """One of its GPUs is shared with other pods: its numbers are the device's, not its own."""

    @property
    def gpu_equivalents(self) -> float:
        """Busy GPUs' worth of work, e.g. two GPUs at 50% = 1.0."""
        return self.percent * self.gpus / 100


@dataclass(frozen=True)
class UsableMetrics:
    """Samples that passed the gate: fresh, valid, one or more per Ready pod."""

    aggregate: float
    """Mean utilisation over Ready pods' GPUs, percent: each pod weighted by the GPUs it holds, as
    HPA weights each pod by its request."""
    per_pod: tuple[PodUtilization, ...]
    not_ready: tuple[str, ...]
    sampled_at: datetime
    """Oldest sample used: the data is at least this fresh."""
    reason: str
    signal: str | None = None
    """The DCGM field(s) read, joined by + when the GPUs differ; None when the source did not say."""
    missing: tuple[str, ...] = ()
    """Ready pods without a sample (only in ``Hold.partial``): unknown, never idle."""

    @property
    def shared_pods(self) -> tuple[str, ...]:
        return tuple(pod.pod for pod in self.per_pod if pod.shared)

    @property
    def ready_count(self) -> int:
        return len(self.per_pod)

    @property
    def gpu_equivalents(self) -> float:
        return sum(pod.gpu_equivalents for pod in self.per_pod)

    @property
    def power_watts(self) -> float | None:
        """Measured power of all Ready pods, or None when any pod lacks a power reading."""
        readings = [pod.power_watts for pod in self.per_pod]
        if any(reading is None for reading in readings):
            return None
        return sum(reading for reading in readings if reading is not None)


@dataclass(frozen=True)
class Hold:
    """The samples must not be acted on. ``reason`` is written for the user."""

    code: HoldCode
    reason: str
    partial: UsableMetrics | None = None
    """PartialMetrics only: what the pods that did report say, with the ``missing`` ones named."""


def view_metrics(
    samples: Iterable[GpuSample],
    ready_pods: Sequence[str],
    not_ready_pods: Sequence[str],
    now: datetime,
    max_age: timedelta,
) -> UsableMetrics | Hold:
    """Summarise the latest samples of a workload's pods, or say why they cannot be used.

    ``max_age`` is normally two collection intervals. Samples of pods that are neither Ready
    nor starting (e.g. already deleted) are ignored; so are samples of starting pods.
    """
    ready = sorted(set(ready_pods))
    starting = tuple(sorted(set(not_ready_pods) - set(ready)))
    if not ready:
        detail = f" ({len(starting)} starting)" if starting else ""
        return Hold(HoldCode.NO_READY_PODS, f"no Ready pods to measure{detail}")

    latest: dict[tuple[str, str], GpuSample] = {}
    ready_set = set(ready)
    for sample in samples:
        if sample.pod not in ready_set:
            continue
        key = (sample.pod, sample.gpu)
        kept = latest.get(key)
        # Two series for one GPU (e.g. a duplicate scrape): the newer reading is the truth.
        if kept is None or sample.timestamp > kept.timestamp:
            latest[key] = sample
    if not latest:
        return Hold(HoldCode.NO_DATA, f"no GPU samples for any of the {len(ready)} Ready pods")

    for sample in sorted(latest.values(), key=lambda s: (s.pod, s.gpu)):
        problem = _invalid_value(sample.percent)
        if problem:
            return Hold(HoldCode.INVALID, f"pod {sample.pod}{_gpu_label(sample)} reported {problem}")
        age = now - sample.timestamp
        if age > max_age:
            return Hold(
                HoldCode.STALE,
                f"pod {sample.pod}{_gpu_label(sample)} sample is {format_duration(age)} old "
                f"(> {format_duration(max_age)})",
            )
        if -age > max_age:
            # A reading from the future means the clocks disagree; its age is meaningless.
            return Hold(
                HoldCode.INVALID,
                f"pod {sample.pod}{_gpu_label(sample)} sample is {format_duration(-age)} in the future; "
                "check the clocks of the operator and the metrics source",
            )

    reported = {pod for pod, _ in latest}
    missing = tuple(pod for pod in ready if pod not in reported)
    by_pod: dict[str, list[GpuSample]] = {}
    for (pod, _), sample in latest.items():
        by_pod.setdefault(pod, []).append(sample)
    per_pod = tuple(_summarise(pod, by_pod[pod]) for pod in ready if pod in reported)
    aggregate = float(weighted_mean(per_pod))
    starting_note = f"; starting, not counted: {', '.join(starting)}" if starting else ""
    fields = sorted({part for s in latest.values() if s.signal for part in s.signal.split("+")})
    usable = UsableMetrics(
        signal="+".join(fields) or None,
        aggregate=aggregate,
        per_pod=per_pod,
        not_ready=starting,
        sampled_at=min(pod.sampled_at for pod in per_pod),
        reason=f"{len(per_pod)} of {len(ready)} Ready pods reported, mean {format_percent(aggregate)}"
        f"{starting_note}",
        missing=missing,
    )
    if missing:
        return Hold(
            HoldCode.PARTIAL,
            f"only {len(reported)} of {len(ready)} Ready pods reported GPU samples; "
            f"missing: {', '.join(missing)}",
            partial=usable,
        )
    return usable


def weighted_mean(pods: Sequence[PodUtilization]) -> Decimal:
    """Utilisation of the pods' GPUs together: a 4-GPU pod at 90% and a 1-GPU pod at 10% are 74% busy,
    not 50%."""
    return weighted_total(pods) / len(pods)


def weighted_total(pods: Sequence[PodUtilization]) -> Decimal:
    """The pods' utilisation summed in pod-equivalents (mean x pods), exact for decisions: multiplied
    before it is divided, so pods of one GPU each sum exactly as their percents do."""
    gpus = sum(pod.gpus for pod in pods)
    busy = sum((Decimal(str(pod.percent)) * pod.gpus for pod in pods), start=Decimal(0))
    return busy * len(pods) / gpus


def _invalid_value(percent: float) -> str:
    if math.isnan(percent):
        return "NaN utilisation"
    if math.isinf(percent):
        return "infinite utilisation"
    if percent < 0 or percent > 100:
        return f"utilisation {percent:g}% outside 0-100%"
    return ""


def _gpu_label(sample: GpuSample) -> str:
    return f" GPU {sample.gpu}" if sample.gpu else ""


def _clean(value: float | None) -> float | None:
    # Memory and power feed recommendations only; a bad reading becomes "unknown", not zero.
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def _summarise(pod: str, samples: Sequence[GpuSample]) -> PodUtilization:
    percents = [s.percent for s in samples]
    memories = [_clean(s.memory_used_mib) for s in samples]
    powers = [_clean(s.power_watts) for s in samples]
    known_memory = [m for m in memories if m is not None]
    return PodUtilization(
        pod=pod,
        percent=sum(percents) / len(percents),
        peak_gpu_percent=max(percents),
        gpus=len(samples),
        memory_used_mib=max(known_memory) if known_memory else None,
        power_watts=None if any(p is None for p in powers) else sum(p for p in powers if p is not None),
        sampled_at=min(s.timestamp for s in samples),
        shared=any(s.shared for s in samples),
    )


GPU_UTIL_FIELD = "DCGM_FI_DEV_GPU_UTIL"


def signal_hint(hold: Hold, signal: str, mig_pods: Sequence[str]) -> Hold:
    """Say what to change when the workload reads a field its GPUs never report: MIG instances have
    no DCGM_FI_DEV_GPU_UTIL, so a MIG workload on that signal would say NoMetrics for ever."""
    if signal != GPU_UTIL_FIELD or not mig_pods or hold.code not in (HoldCode.NO_DATA, HoldCode.PARTIAL):
        return hold
    hint = (
        f"{', '.join(sorted(mig_pods))} run on MIG instances, which report no {GPU_UTIL_FIELD}; "
        "signal Auto or DCGM_FI_PROF_GR_ENGINE_ACTIVE reads them"
    )
    return Hold(hold.code, f"{hold.reason}. {hint}", hold.partial)
