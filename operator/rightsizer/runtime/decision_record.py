"""Every inference decision's inputs and result, as a replayable timeline step.

With ``--record-decisions FILE`` the operator appends one JSON line per decision: the workload, its
spec, the current count, what the pass observed (in ``rightsizer backtest``'s timeline format) and
what it decided. ``timeline_from_records`` turns one workload's lines back into a timeline, so a
user can replay last week under another spec, and the tests can check that a replay decides what
the operator decided.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rightsizer.adapters.kube import PodInfo
from rightsizer.core.metrics_view import GpuSample
from rightsizer.core.replicas import Decision
from rightsizer.core.scaling_signals import SignalReading
from rightsizer.core.timestamps import format_precise
from rightsizer.runtime.workload_observe import Observation

Recorder = Callable[[Mapping[str, Any]], None]


def observed_step(
    now: datetime,
    pods: Sequence[PodInfo],
    samples: Iterable[GpuSample],
    readings: Mapping[str, SignalReading],
    wake_signal: float | None,
) -> dict[str, Any]:
    """What one pass saw, as a timeline step: per pod its GPUs' values and when they were sampled."""
    by_pod: dict[str, list[GpuSample]] = {}
    for sample in samples:
        by_pod.setdefault(sample.pod, []).append(sample)
    step_pods = []
    for pod in pods:
        gpus = sorted(by_pod.get(pod.name, []), key=lambda s: s.gpu)
        entry: dict[str, Any] = {
            "name": pod.name,
            "ready": pod.ready,
            "deleting": pod.deleting,
            "phase": pod.phase,
            "readySince": format_precise(pod.ready_since) if pod.ready_since else None,
            "gpus": len(gpus) or pod.gpus,
            "utilization": sum(s.percent for s in gpus) / len(gpus) if gpus else None,
            "values": {
                name: r.per_pod[pod.name]
                for name, r in readings.items()
                if r.per_pod is not None and pod.name in r.per_pod
            },
        }
        if gpus:
            entry["perGpu"] = [s.percent for s in gpus]
            entry["sampledAt"] = format_precise(min(s.timestamp for s in gpus))
            if any(s.shared for s in gpus):
                entry["shared"] = True
        step_pods.append(entry)
    scalars = {name: r.value for name, r in readings.items() if r.value is not None}
    if wake_signal is not None:
        scalars["wakeUp"] = wake_signal
    return {"at": format_precise(now), "pods": step_pods, "scalars": scalars}


def decision_record(
    workload: str, spec: Mapping[str, Any], step: Mapping[str, Any], decision: Decision
) -> dict[str, Any]:
    return {
        "workload": workload,
        "spec": dict(spec),
        "current": decision.current,
        "step": dict(step),
        "decision": {
            "replicas": decision.replicas,
            "action": str(decision.action),
            "reason": decision.reason,
        },
    }


def pass_record(observed: Observation, decision: Decision) -> dict[str, Any]:
    """The record of a pass's replica decision, from what the pass observed."""
    read = observed.inference
    readings = read.readings if read is not None else {}
    wake_signal = read.wake_signal if read is not None else None
    step = observed_step(observed.now, observed.pods, observed.gpu_samples, readings, wake_signal)
    namespace, name = observed.header.key
    return decision_record(f"{namespace}/{name}", observed.spec.to_wire(), step, decision)


class JsonLinesRecorder:
    """Appends records to a file, one JSON object per line; passes run on several threads."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()

    def __call__(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n"
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write(line)


def timeline_from_records(records: Iterable[Mapping[str, Any]], workload: str) -> dict[str, Any]:
    """One workload's records as a timeline document: its latest spec, its first count, every step."""
    mine = [r for r in records if r.get("workload") == workload]
    if not mine:
        raise LookupError(f"no decisions recorded for {workload}")
    return {
        "spec": mine[-1]["spec"],
        "replicas": mine[0]["current"],
        "steps": [r["step"] for r in mine],
    }
