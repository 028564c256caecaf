"""The one interface every GPU metrics source implements, and the maths they share.

A source answers "what did these pods' GPUs do?" with one `Sample` per pod it has data for. A pod it
has no series for is simply absent: *unknown*, never idle. Values are passed through with their real
timestamps, NaN included, so the caller judges staleness and holds on bad data.

How a pod's GPUs become one sample (the same for every source):
- per GPU, the points inside the window are reduced with `over` (latest point when the window is 0);
- `value` is the mean over the pod's GPUs; NaN on any GPU makes it NaN; `per_gpu` keeps each GPU's
  value (a pod is idle only when its busiest GPU is);
- a GPU whose signal values were all refused (DCGM blanks, out of range) makes the whole pod unknown:
  the refused GPU may be the busy one;
- `timestamp` is the *oldest* of the GPUs' latest points, so one silent GPU makes the pod look stale;
- `since` is the newest of the GPUs' first points: the stretch every GPU has data for;
- `memory_used_mib` is the peak per-GPU framebuffer use (what decides whether a smaller GPU fits);
- `power_watts` is the pod's total draw (the mean per GPU over the window, summed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from rightsizer.core.metrics_view import Hold, HoldCode, UsableMetrics

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
# Not a field: GR_ENGINE_ACTIVE where the GPU reports it (always for MIG, which has no GPU_UTIL),
# else GPU_UTIL, chosen per GPU.
AUTO_SIGNAL = "Auto"

# Profiling fields are ratios 0..1; everything we decide on is a percentage.
RATIO_SIGNALS = frozenset(
    {
        GR_ENGINE_ACTIVE,
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_SM_OCCUPANCY",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE",
    }
)

Over = Literal["last", "avg", "max", "min"]
PodKey = tuple[str, str]  # (namespace, pod)


@dataclass(frozen=True)
class PodLabels:
    """Which series labels name a GPU's pod. dcgm-exporter's own flavours, plus whatever relabelling
    a Prometheus set-up applied (e.g. exported_namespace / exported_pod under honor_labels: false)."""

    namespace: str
    pod: str
    container: str


NEW_LABELS = PodLabels("namespace", "pod", "container")
OLD_LABELS = PodLabels("pod_namespace", "pod_name", "container_name")
DEFAULT_POD_LABELS: tuple[PodLabels, ...] = (NEW_LABELS, OLD_LABELS)


@dataclass(frozen=True)
class Sample:
    """What one pod's GPUs did, with the evidence needed to trust it or not."""

    value: float
    timestamp: datetime
    gpus: int = 1
    since: datetime | None = None
    points: int = 1
    memory_used_mib: float | None = None
    power_watts: float | None = None
    per_gpu: tuple[float, ...] = ()
    signal: str | None = None
    """The field read (Auto resolves per GPU; two fields joined by "+" when a pod's GPUs differ)."""
    shared: bool = False
    """Another pod's series name one of this pod's GPUs (time-slicing, MPS): the values are the
    device's, not this pod's own."""

    @property
    def peak(self) -> float:
        """The busiest GPU's value (the mean when per-GPU values are not known)."""
        if not self.per_gpu:
            return self.value
        return math.nan if any(math.isnan(v) for v in self.per_gpu) else max(self.per_gpu)

    def age_seconds(self, now: datetime) -> float:
        return (now - self.timestamp).total_seconds()

    def is_fresh(self, now: datetime, max_age_seconds: float) -> bool:
        return not math.isnan(self.value) and self.age_seconds(now) <= max_age_seconds


PodSamples = Mapping[str, Sample]
FleetSamples = Mapping[PodKey, Sample]


class GpuMetricsSource(Protocol):
    """Prometheus, a direct DCGM scrape, or the in-memory fake."""

    @property
    def name(self) -> str: ...

    def fleet_samples(
        self, signal: str = GPU_UTIL, window_seconds: int = 0, over: Over = "avg"
    ) -> FleetSamples:
        """Every pod with GPU series, keyed by (namespace, pod): one query per pass for all workloads."""
        ...

    def custom_pod_samples(self, template: str, namespace: str, pods: Sequence[str]) -> PodSamples:
        """A user's PromQL template with {{namespace}}/{{pods}}, returning a percentage per pod."""
        ...

    def scalar(
        self, query: str, namespace: str | None = None, pods: Sequence[str] | None = None
    ) -> float | None:
        """One number (e.g. a wake-up request rate); None when the query matches nothing."""
        ...


_LISTED_ERRORS = 3


def name_failing_endpoints(metrics: UsableMetrics | Hold, source: object) -> UsableMetrics | Hold:
    """A hold for missing samples, told which exporter endpoints failed: their pods' series are the
    ones missing, and the endpoint's error (a parse error, a label explosion) is what to fix.

    Sources that scrape several endpoints (one exporter per node) keep going when one fails, and
    report it as ``last_errors`` (URL -> why); other sources raise instead and have none."""
    if not isinstance(metrics, Hold) or metrics.code not in (HoldCode.NO_DATA, HoldCode.PARTIAL):
        return metrics
    errors = getattr(source, "last_errors", None)
    if not isinstance(errors, Mapping) or not errors:
        return metrics
    failing = sorted((str(url), str(error)) for url, error in errors.items())
    listed = "; ".join(f"{url}: {error}" for url, error in failing[:_LISTED_ERRORS])
    more = f" (+{len(failing) - _LISTED_ERRORS} more)" if len(failing) > _LISTED_ERRORS else ""
    plural = "s" if len(failing) > 1 else ""
    return Hold(
        metrics.code,
        f"{metrics.reason}; {len(failing)} exporter endpoint{plural} failing: {listed}{more}",
        metrics.partial,
    )


@dataclass
class GpuSeries:
    """Points of one GPU held by one pod, per metric: [(time, value), ...] in time order."""

    namespace: str
    pod: str
    gpu: str
    signal: list[tuple[datetime, float]] = field(default_factory=list)
    memory: list[tuple[datetime, float]] = field(default_factory=list)
    power: list[tuple[datetime, float]] = field(default_factory=list)
    signal_refused: bool = False
    """The GPU had signal values, and every one was refused: it is unknown, not absent."""
    signal_name: str = ""
    """The field ``signal`` holds (under Auto, the one this GPU reports)."""


def signal_fields(signal: str) -> tuple[str, ...]:
    """The fields a signal reads, in order of preference."""
    return (GR_ENGINE_ACTIVE, GPU_UTIL) if signal == AUTO_SIGNAL else (signal,)


def to_percent(signal: str, value: float) -> float:
    return value * 100.0 if signal in RATIO_SIGNALS else value


def summarise(gpus: Sequence[GpuSeries], over: Over, window_seconds: int) -> Sample | None:
    """One pod's GPUs → one Sample (rules in the module docstring); None when no GPU has a point."""
    with_points = sorted((g for g in gpus if g.signal), key=lambda g: g.gpu)
    if not with_points or any(g.signal_refused and not g.signal for g in gpus):
        return None
    reduce_to: Over = "last" if window_seconds <= 0 else over
    values = [_reduce([v for _, v in sorted(g.signal)], reduce_to) for g in with_points]
    latest = [max(t for t, _ in g.signal) for g in with_points]
    firsts = [min(t for t, _ in g.signal) for g in with_points]
    memory = [
        _reduce([v for _, v in sorted(g.memory)], "last" if window_seconds <= 0 else "max")
        for g in gpus
        if g.memory
    ]
    power = [
        _reduce([v for _, v in sorted(g.power)], "last" if window_seconds <= 0 else "avg")
        for g in gpus
        if g.power
    ]
    return Sample(
        value=_mean(values),
        timestamp=min(latest),
        gpus=len(with_points),
        since=max(firsts) if window_seconds > 0 else min(latest),
        points=min(len(g.signal) for g in with_points),
        memory_used_mib=_peak(memory) if memory else None,
        power_watts=_total(power) if power else None,
        per_gpu=tuple(values),
        signal="+".join(sorted({g.signal_name for g in with_points if g.signal_name})) or None,
    )


def summarise_pods(series: Iterable[GpuSeries], over: Over, window_seconds: int) -> dict[PodKey, Sample]:
    by_pod: dict[PodKey, list[GpuSeries]] = {}
    holders: dict[str, set[PodKey]] = {}
    for gpu in series:
        by_pod.setdefault((gpu.namespace, gpu.pod), []).append(gpu)
        # A MIG instance's identity names its instance, so only a whole GPU can have two holders.
        holders.setdefault(gpu.gpu, set()).add((gpu.namespace, gpu.pod))
    out: dict[PodKey, Sample] = {}
    for key, gpus in by_pod.items():
        sample = summarise(gpus, over, window_seconds)
        if sample is not None:
            shared = any(len(holders[g.gpu]) > 1 for g in gpus)
            out[key] = replace(sample, shared=shared) if shared else sample
    return out


def _reduce(values: Sequence[float], over: Over) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    if over == "last":
        return values[-1]
    if over == "max":
        return max(values)
    if over == "min":
        return min(values)
    return math.fsum(values) / len(values)


def _mean(values: Sequence[float]) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    return math.fsum(values) / len(values)


def _peak(values: Sequence[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def _total(values: Sequence[float]) -> float:
    return math.fsum(values)


def validate_window(window_seconds: int, over: str) -> None:
    if window_seconds < 0:
        raise ValueError(f"window_seconds must be >= 0, got {window_seconds}")
    if over not in ("last", "avg", "max", "min"):
        raise ValueError(f"over must be one of last, avg, max, min; got {over!r}")
