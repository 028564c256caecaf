"""A workload's past, read from Prometheus, as the timeline ``rightsizer backtest`` replays.

**Which pods.** A GPU series names its pod, and history holds pods that no longer exist, so the
workload's pods are found by name: the pods the target's selector matches now, plus every name the
target's kind gives its pods (``POD_NAME_PATTERNS``): a Deployment's (or an Argo Rollout's) pods
are ``NAME-<pod-template-hash>-<suffix>`` (both parts drawn from the API server's alphabet for
generated names, the hash up to 10 characters, the suffix exactly 5), a StatefulSet's
``NAME-<ordinal>``, a LeaderWorkerSet's ``NAME-<group>`` and ``NAME-<group>-<index>``, a Job's
``NAME-<suffix>`` or ``NAME-<index>-<suffix>``. The pattern is anchored and allows no other dash,
so another object whose name starts with ``NAME-`` (``chat-v2``'s pods, ``chat-v2-<hash>-<suffix>``)
never matches. Kinds without such a rule, and names so long that the API server cut them, are read
through the pods they have now.

**When a pod existed.** From its first step with a sample to its last: a step in between without
one is a gap, and the pod is then *unknown* (as a Ready pod without a sample is to the operator),
never idle and never gone. A pod holding several GPUs is unknown at a step where any of them has no
sample in the window, since the missing one may be the busy one.

**What each step measures.** What a pass would: the mean of each GPU's points in the metric window
before the step (``summarise_pods``, as the live read), stamped with the oldest GPU's latest point,
so the replay judges staleness as the operator does. NaN stays NaN, and the replay holds on it.

**How many replicas ran.** kube-state-metrics' count of the target (``REPLICA_METRICS``) where it has
one at a step; a replica it counts beyond the pods with GPU series is taken as a pod still starting
(no GPUs busy yet, as a Pending pod is to the operator). Without kube-state-metrics, the pods that
existed at the step.

**Request signals** (Pods, Object, External metrics, the wake-up query) join each step with the
value their query had there; a step without one has none, as a live read that matched nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rightsizer.adapters.metrics import promql
from rightsizer.adapters.metrics.base import GpuSeries, summarise_pods
from rightsizer.api.v1alpha1 import GPUWorkloadSpec
from rightsizer.runtime.backtest import Timeline, TimelinePod, TimelineStep, parse_timeline

_GENERATED = "[bcdfghjklmnpqrstvwxz2456789]"
"""The characters the API server draws generated names and pod-template hashes from."""

_ORDINAL = "(?:0|[1-9][0-9]*)"
_HASHED = f"-{_GENERATED}{{1,10}}-{_GENERATED}{{5}}"
POD_NAME_PATTERNS: Mapping[tuple[str, str], str] = {
    ("apps", "Deployment"): _HASHED,
    ("argoproj.io", "Rollout"): _HASHED,
    ("apps", "ReplicaSet"): f"-{_GENERATED}{{5}}",
    ("apps", "StatefulSet"): f"-{_ORDINAL}",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): f"-{_ORDINAL}(?:-{_ORDINAL})?",
    ("batch", "Job"): f"-(?:{_ORDINAL}-)?{_GENERATED}{{5}}",
}
"""What follows the object's name in its pods' names, by (group, kind)."""

REPLICA_METRICS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("apps", "Deployment"): ("kube_deployment_spec_replicas", "deployment"),
    ("apps", "StatefulSet"): ("kube_statefulset_replicas", "statefulset"),
}
"""kube-state-metrics' desired count of a kind, and the label naming the object."""

STARTING = "(starting-{})"
"""The name of a replica kube-state-metrics counts but no GPU series shows."""


def pod_pattern(group: str, kind: str, name: str, pods_now: Sequence[str]) -> str | None:
    """The pods of the target, now and in history, as one anchored RE2 pattern; None: none to read."""
    names = [promql.regex_escape(p) for p in sorted(set(pods_now))]
    rule = POD_NAME_PATTERNS.get((group, kind))
    if rule is not None:
        names.append(promql.regex_escape(name) + rule)
    return "^(?:" + "|".join(names) + ")$" if names else None


def pods_description(group: str, kind: str, name: str) -> str:
    """How the pods were found, for the output."""
    rule = {
        ("apps", "Deployment"): f"{name}-<hash>-<suffix>",
        ("argoproj.io", "Rollout"): f"{name}-<hash>-<suffix>",
        ("apps", "ReplicaSet"): f"{name}-<suffix>",
        ("apps", "StatefulSet"): f"{name}-<ordinal>",
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): f"{name}-<group>[-<index>]",
        ("batch", "Job"): f"{name}-[<index>-]<suffix>",
    }.get((group, kind))
    now = "the pods the target's selector matches now"
    return f"{now} and {kind} pod names {rule}" if rule else f"{now} only ({kind} pods have no name rule)"


@dataclass(frozen=True)
class History:
    timeline: Timeline
    pods: tuple[str, ...]
    """Every pod with a GPU series, in name order."""
    replicas_from: str
    """Where the count that ran comes from, for the output."""
    first_data: datetime
    """The first step with a sample; earlier steps were left out."""


class NoHistory(Exception):
    """Nothing to replay: the message says what was looked for."""


@dataclass(frozen=True)
class Signals:
    """The request signals' past, keyed by metric name (the wake-up query's as ``wakeUp``): per pod
    for Pods metrics, one number for the others; a step without a value has none, as a live read
    that matched nothing."""

    per_pod: Mapping[str, Mapping[str, Mapping[datetime, float]]] = field(default_factory=dict)
    scalars: Mapping[str, Mapping[datetime, float]] = field(default_factory=dict)

    def values(self, pod: str, at: datetime) -> dict[str, float]:
        out = {}
        for name, pods in self.per_pod.items():
            value = pods.get(pod, {}).get(at)
            if value is not None:
                out[name] = value
        return out

    def scalars_at(self, at: datetime) -> dict[str, float]:
        return {name: by_time[at] for name, by_time in self.scalars.items() if at in by_time}


def build_timeline(
    spec: GPUWorkloadSpec,
    series: Sequence[GpuSeries],
    times: Sequence[datetime],
    *,
    replica_counts: Mapping[datetime, int] | None = None,
    replica_metric: str | None = None,
    signals: Signals | None = None,
) -> History:
    """The timeline of `times` from the workload's GPU series (one point per step that saw a sample),
    kube-state-metrics' counts when it had any (rules in the module docstring) and the request
    signals' values."""
    signals = signals or Signals()
    window = timedelta(seconds=max(spec.metric.window.total_seconds(), 0))
    by_pod: dict[str, list[_Indexed]] = {}
    for gpu in series:
        if gpu.signal:
            by_pod.setdefault(gpu.pod, []).append(_Indexed(gpu))
    if not by_pod:
        raise NoHistory("no GPU series of the workload's pods")
    spans = {
        pod: (min(g.times[0] for g in gpus), max(g.times[-1] for g in gpus)) for pod, gpus in by_pod.items()
    }
    start = min(first for first, _ in spans.values())
    kept = [t for t in times if t >= start]
    if not kept:
        raise NoHistory("no GPU samples at any step")
    typical = max(len(gpus) for gpus in by_pod.values())
    counts = replica_counts or {}
    steps: list[TimelineStep] = []
    for at in kept:
        alive = sorted(p for p, (first, last) in spans.items() if first <= at <= last)
        samples = _samples_at(at, window, [g for p in alive for g in by_pod[p]])
        pods = [
            _pod(p, by_pod[p], samples.get(p), None if spans[p][0] <= kept[0] else spans[p][0]) for p in alive
        ]
        pods = [pod.model_copy(update={"values": signals.values(pod.name, at)}) for pod in pods]
        missing = counts.get(at, 0) - len(pods)
        pods += [
            TimelinePod(name=STARTING.format(i + 1), ready=False, phase="Pending", gpus=typical)
            for i in range(max(missing, 0))
        ]
        steps.append(TimelineStep(at=at, pods=tuple(pods), scalars=signals.scalars_at(at)))
    start_count = counts.get(kept[0], len(steps[0].pods))
    timeline = parse_timeline({"spec": spec, "replicas": start_count, "steps": steps})
    used = replica_metric if replica_metric and counts else None
    return History(
        timeline=timeline,
        pods=tuple(sorted(by_pod)),
        replicas_from=f"{used} (kube-state-metrics)" if used else "the pods with a GPU series at each step",
        first_data=kept[0],
    )


@dataclass(frozen=True)
class _Reading:
    utilization: float | None
    per_gpu: tuple[float, ...] | None
    sampled_at: datetime | None
    shared: bool


class _Indexed:
    """One GPU's points with their times apart, so a step finds its window by bisection: a week at
    a 30 s step is 20,000 steps, and scanning every point at each would be quadratic."""

    def __init__(self, gpu: GpuSeries) -> None:
        self.gpu = gpu
        self.points = sorted(gpu.signal)
        self.times = [t for t, _ in self.points]

    def window(self, at: datetime, window: timedelta) -> GpuSeries:
        """The points in (at - window, at]; a window of 0 is the point at `at` alone."""
        end = bisect_right(self.times, at)
        start = (
            bisect_right(self.times, at - window) if window > timedelta(0) else bisect_left(self.times, at)
        )
        g = self.gpu
        return GpuSeries(g.namespace, g.pod, g.gpu, signal=self.points[start:end], signal_name=g.signal_name)


def _samples_at(at: datetime, window: timedelta, gpus: Sequence[_Indexed]) -> dict[str, _Reading]:
    """Each pod's reading at `at` from every GPU's points in the window, as a pass reads them."""
    sliced = [g.window(at, window) for g in gpus]
    complete: dict[str, bool] = {}
    for g in sliced:
        complete[g.pod] = complete.get(g.pod, True) and bool(g.signal)
    seconds = max(int(window.total_seconds()), 0)
    out: dict[str, _Reading] = {}
    for (_, pod), sample in summarise_pods([g for g in sliced if g.signal], "avg", seconds).items():
        if complete.get(pod):
            per_gpu = sample.per_gpu if sample.gpus > 1 else None
            out[pod] = _Reading(sample.value, per_gpu, sample.timestamp, sample.shared)
    return out


def _pod(
    name: str, gpus: Sequence[_Indexed], reading: _Reading | None, ready_since: datetime | None
) -> TimelinePod:
    # A pod there from the first step was Ready before it, so not warming up; a later one from its
    # first sample (its GPUs report from then on).
    value = reading.utilization if reading is not None else None
    return TimelinePod(
        name=name,
        ready=True,
        ready_since=ready_since,
        gpus=len(gpus),
        utilization=value,
        per_gpu=reading.per_gpu
        if reading is not None and value is not None and not math.isnan(value)
        else None,
        sampled_at=reading.sampled_at if reading is not None else None,
        shared=reading.shared if reading is not None else False,
    )
