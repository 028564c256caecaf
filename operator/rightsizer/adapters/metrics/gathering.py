"""Raw series (from a Prometheus answer, a scrape or a pasted file) → per-GPU series of pods.

The one place where a series is attributed to a pod, told apart from other GPUs, and its values
checked, so every source (and `rightsizer metrics inspect`) reads a series the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rightsizer.adapters.metrics.base import FB_USED, POWER_USAGE, GpuSeries, signal_fields, to_percent
from rightsizer.adapters.metrics.readings import OnRejected, rejection
from rightsizer.adapters.metrics.series_shapes import (
    LabelShape,
    canonical_name,
    exporter_pods,
)


@dataclass(frozen=True)
class RawSeries:
    name: str
    """As the series carries it (``dcgm_gpu_utilization``, lower-case field names...)."""
    labels: Mapping[str, str]
    points: Sequence[tuple[datetime, float]]


@dataclass
class Gathered:
    gpus: list[GpuSeries] = field(default_factory=list)
    unattributed: int = 0
    """GPUs (or MIG instances) whose signal names no workload pod: idle, or the exporter's own pod."""
    shapes: Counter[str] = field(default_factory=Counter)
    """How the signal's attributed series were read: exported, new, old or a custom shape."""
    rejected: Counter[str] = field(default_factory=Counter)


def gpu_identity(labels: Mapping[str, str]) -> str:
    """A GPU is its UUID (lower-case ``uuid`` in 1.x names); without one, its host and index. A MIG
    instance shares its parent's UUID and is told apart by ``GPU_I_ID``."""
    host = labels.get("Hostname") or labels.get("hostname") or labels.get("instance", "")
    base = labels.get("UUID") or labels.get("uuid") or f"{host}/{labels.get('gpu', '')}"
    instance = labels.get("GPU_I_ID")
    return f"{base}/{instance}" if instance else base


def gather(
    series: Iterable[RawSeries],
    signal: str,
    shape: LabelShape,
    on_rejected: OnRejected | None = None,
) -> Gathered:
    """Per-GPU series of every attributed pod; the signal's values in percent. Values that are not
    readings are dropped (and counted); one series seen twice is read once. Under the Auto signal
    each GPU is read by the first field it reports (GR_ENGINE_ACTIVE, else GPU_UTIL)."""
    items = _distinct(series)
    exporters = exporter_pods(item.labels for item in items) if shape.fixed is None else set()
    fields = tuple(canonical_name(f) for f in signal_fields(signal))
    out = Gathered()
    by_gpu: dict[tuple[str, str, str], GpuSeries] = {}
    candidates: dict[tuple[str, str, str], dict[str, list[tuple[datetime, float]]]] = {}
    refused: set[tuple[tuple[str, str, str], str]] = set()
    unattributed: set[str] = set()
    for item in items:
        name = canonical_name(item.name)
        if name not in (*fields, FB_USED, POWER_USAGE):
            continue
        owner, how = shape.owner(item.labels, exporters.__contains__)
        if owner is None:
            if name in fields:
                unattributed.add(gpu_identity(item.labels))
            continue
        points = _readings(item, name, out, on_rejected)
        key = (owner[0], owner[1], gpu_identity(item.labels))
        gpu = by_gpu.setdefault(key, GpuSeries(*key))
        if name in fields:
            out.shapes[how] += 1
            candidates.setdefault(key, {}).setdefault(name, []).extend(points)
            if item.points and not points:
                refused.add((key, name))
        elif name == FB_USED:
            gpu.memory.extend(points)
        else:
            gpu.power.extend(points)
    for key, by_name in candidates.items():
        gpu = by_gpu[key]
        name = next(f for f in fields if f in by_name)
        gpu.signal_name = name
        gpu.signal = [(at, to_percent(name, value)) for at, value in by_name[name]]
        gpu.signal_refused = (key, name) in refused and not gpu.signal
    out.gpus = list(by_gpu.values())
    out.unattributed = len(unattributed)
    return out


def _readings(
    item: RawSeries, name: str, out: Gathered, on_rejected: OnRejected | None
) -> list[tuple[datetime, float]]:
    points = []
    for at, value in item.points:
        reason = rejection(name, value, item.labels)
        if reason is None:
            points.append((at, value))
            continue
        out.rejected[reason.value] += 1
        if on_rejected is not None:
            on_rejected(reason)
    return points


def _distinct(series: Iterable[RawSeries]) -> list[RawSeries]:
    # Two queries (one per label shape) may both match a series carrying several shapes.
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    out: list[RawSeries] = []
    for item in series:
        key = (item.name, frozenset(item.labels.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(item)
    return out
