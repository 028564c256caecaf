"""Protections that depend on time or on a pod's group: the startup shield, time-limited
do-not-disrupt, and gangs.

* **Startup shield.** Large models take minutes to load: a pod Ready for less than the grace period
  (the GPUWorkload's ``protection.startupGracePeriod``, else the pool's ``startupGracePeriod``) is never
  moved. A pod that is not Ready yet is shielded while it started within the period (it is loading);
  one that never became Ready long after starting is broken, and moving it harms nothing.
* **Until a time.** ``rightsizer.io/do-not-disrupt-until: <RFC 3339>`` on a pod or a node protects it
  until then. A value that cannot be read protects (fail closed); callers report it in an event.
* **Checkpoint handshake** (opt-in, ``rightsizer.io/checkpoint-before-evict: "true"``): the drain first
  writes ``rightsizer.io/evict-requested: <time>`` on the pod and evicts it only once the pod answers
  ``rightsizer.io/checkpoint-done``; without an answer in the pool's ``checkpointTimeout`` the drain
  stops and the node is kept: such a pod is never evicted unasked.
* **Gangs.** Pods that only work as a group (a JobSet, a Kubeflow job, a LeaderWorkerSet group, a
  RayCluster, a PodGroup or Kueue pod group, or pods sharing a label the pool names) are never moved:
  evicting one stops the others, and moving all of them at once is a restart, not a consolidation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rightsizer.core.snapshot import Pod
from rightsizer.core.timestamps import parse_time

DO_NOT_DISRUPT_UNTIL = "rightsizer.io/do-not-disrupt-until"
DEFAULT_STARTUP_GRACE = timedelta(minutes=10)
# The checkpoint handshake: a pod that asks for it is told before it is evicted, and evicted only once
# it says its checkpoint is written.
CHECKPOINT_BEFORE_EVICT = "rightsizer.io/checkpoint-before-evict"
EVICT_REQUESTED = "rightsizer.io/evict-requested"
CHECKPOINT_DONE = "rightsizer.io/checkpoint-done"
DEFAULT_CHECKPOINT_TIMEOUT = timedelta(minutes=10)

# Labels (and one annotation) that the group-scheduling controllers put on every pod of a group.
GANG_LABELS = (
    "jobset.sigs.k8s.io/jobset-name",
    "training.kubeflow.org/job-name",
    "trainer.kubeflow.org/trainjob-name",
    "leaderworkerset.sigs.k8s.io/name",
    "ray.io/cluster",
    "kueue.x-k8s.io/pod-group-name",
    "scheduling.x-k8s.io/pod-group",
    "pod-group.scheduling.sigs.k8s.io",
    "volcano.sh/job-name",
)
GANG_ANNOTATIONS = ("scheduling.k8s.io/group-name",)


@dataclass(frozen=True, slots=True)
class Until:
    """What ``do-not-disrupt-until`` says: protected (with why), or not (expired or absent)."""

    protected: bool
    reason: str = ""
    unreadable: bool = False  # the value is not a time: protected, and worth an event


def protected_until(annotations: Mapping[str, str], now: datetime, what: str) -> Until:
    raw = annotations.get(DO_NOT_DISRUPT_UNTIL)
    if raw is None:
        return Until(False)
    until = parse_time(raw)
    if until is None:
        return Until(
            True,
            f"{what} annotated {DO_NOT_DISRUPT_UNTIL}={raw!r}, which is not an RFC 3339 time: protected",
            unreadable=True,
        )
    if now < until:
        return Until(True, f"{what} annotated {DO_NOT_DISRUPT_UNTIL} ({raw})")
    return Until(False)


def shielded(pod: Pod, grace: timedelta, now: datetime) -> str | None:
    """Why ``pod`` is still starting up and must stay, or None."""
    if grace <= timedelta(0):
        return None
    if pod.ready_since is not None:
        ready_for = now - pod.ready_since
        if ready_for < grace:
            return f"started recently (Ready for {_short(ready_for)} < startupGracePeriod {_short(grace)})"
        return None
    started = pod.started or pod.created
    if started is not None and now - started < grace:
        return f"starting up (not Ready yet, started {_short(now - started)} ago)"
    return None


def wants_checkpoint(pod: Pod) -> bool:
    return pod.annotations.get(CHECKPOINT_BEFORE_EVICT, "").strip().lower() == "true"


def checkpoint_done(pod: Pod) -> bool:
    return bool(pod.annotations.get(CHECKPOINT_DONE, "").strip())


def gang_of(pod: Pod, extra_labels: Iterable[str] = ()) -> str | None:
    """``label=value`` naming the group ``pod`` belongs to, or None."""
    for label in (*GANG_LABELS, *extra_labels):
        value = pod.labels.get(label)
        if value:
            return f"{label}={value}"
    for annotation in GANG_ANNOTATIONS:
        value = pod.annotations.get(annotation)
        if value:
            return f"{annotation}={value}"
    return None


def _short(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
