"""What the operator reads from exporter text or a live Prometheus, per pod: for users asking "why
does my workload say NoMetrics?". The series go through the same gathering as the operator's own
sources, so the answer is the operator's view, not a re-implementation of it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rightsizer.adapters.metrics.base import summarise
from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.adapters.metrics.gathering import Gathered, RawSeries, gather
from rightsizer.adapters.metrics.series_shapes import LabelShape

_ELISIONS = frozenset({"...", "…"})


@dataclass(frozen=True)
class PodReading:
    gpus: int
    """GPUs or MIG instances the pod's series name."""
    utilization: float | None
    """Mean of the latest readings, percent; None when no GPU of the pod has a reading."""
    signal: str | None
    shared: bool
    """Another pod's series name the same physical GPU (time-slicing, MPS): values are device-level."""


@dataclass(frozen=True)
class Inspection:
    pods: Mapping[str, PodReading]
    unattributed: int
    rejected: Mapping[str, int]
    shape: str

    def as_json(self) -> dict[str, Any]:
        return {
            "pods": {
                key: {
                    "gpus": pod.gpus,
                    "utilization": None if pod.utilization is None else round(pod.utilization, 2),
                    "signal": pod.signal,
                    "shared": pod.shared,
                }
                for key, pod in sorted(self.pods.items())
            },
            "unattributed": self.unattributed,
            "rejected": dict(sorted(self.rejected.items())),
            "shape": self.shape,
        }

    def as_text(self) -> str:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        lines = [f"shape: {self.shape}   unattributed GPUs: {self.unattributed}   rejected: {rejected}"]
        if not self.pods:
            lines.append(NOTHING_ATTRIBUTED)
            return "\n".join(lines) + "\n"
        width = max(len("POD"), *(len(key) for key in self.pods))
        lines.append(f"{'POD':<{width}}  GPUS  UTIL%   SIGNAL                          SHARED")
        for key, pod in sorted(self.pods.items()):
            util = "-" if pod.utilization is None else f"{pod.utilization:.1f}"
            shared = "yes" if pod.shared else "no"
            lines.append(f"{key:<{width}}  {pod.gpus:>4}  {util:>5}   {pod.signal or '-':<30}  {shared}")
        return "\n".join(lines) + "\n"


NOTHING_ATTRIBUTED = (
    "hint: no series named a workload pod. Is dcgm-exporter's Kubernetes pod mapping on (-k)? Under a "
    "ServiceMonitor with honorLabels: false the pod is in exported_pod (--pod-labels auto or exported); "
    "a custom relabelling needs --pod-labels namespace=LABEL,pod=LABEL."
)


def strip_elisions(text: str) -> tuple[str, int]:
    """Pasted docs shorten listings with "..." lines; they are not exposition text. They become blank
    lines, so a parse error still names the line of the file."""
    lines = text.split("\n")
    elided = [i for i, line in enumerate(lines) if line.strip() in _ELISIONS]
    for i in elided:
        lines[i] = ""
    return "\n".join(lines), len(elided)


def inspect_text(text: str, shape: LabelShape, signal: str, now: datetime) -> Inspection:
    """Exporter text (a /metrics page, or Prometheus' /federate output). Raises
    ExpositionParseError naming the first line that is not exposition text."""
    series = parse_exposition(text).series
    raw = [RawSeries(s.name, s.labels, [(now, s.value)]) for s in series]
    return inspection(gather(raw, signal, shape))


def inspection(gathered: Gathered) -> Inspection:
    by_pod: dict[str, list[Any]] = {}
    holders: dict[str, set[str]] = {}
    for gpu in gathered.gpus:
        if not gpu.signal and not gpu.signal_refused:
            continue  # memory or power without the signal: not a GPU the operator can judge
        key = f"{gpu.namespace}/{gpu.pod}"
        by_pod.setdefault(key, []).append(gpu)
        holders.setdefault(gpu.gpu, set()).add(key)
    pods: dict[str, PodReading] = {}
    for key, gpus in by_pod.items():
        sample = summarise(gpus, "last", 0)
        value = None if sample is None or math.isnan(sample.value) else sample.value
        pods[key] = PodReading(
            gpus=len(gpus),
            utilization=value,
            signal=sample.signal if sample is not None else None,
            shared=any(len(holders[g.gpu]) > 1 for g in gpus),
        )
    return Inspection(pods, gathered.unattributed, dict(gathered.rejected), _shape(gathered.shapes))


def _shape(shapes: Counter[str]) -> str:
    return "+".join(sorted(shapes)) if shapes else "none"
