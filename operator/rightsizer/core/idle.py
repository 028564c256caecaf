"""When a training workload is idle, and what to do about it.

Training jobs are never rescaled for load: their replica count is part of the job (ranks,
batch size). The only thing the operator does is notice that *every* replica has sat below the
idle threshold for the idle duration, and then act per the idle policy: recommend, annotate, or
suspend. Anything short of clear evidence (missing data, pods still starting, one busy GPU)
restarts the idle clock, because suspending a job that was only waiting costs someone a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rightsizer.api.durations import format_duration
from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.metrics_view import Hold, UsableMetrics
from rightsizer.core.wording import format_percent


class IdleAction(StrEnum):
    RECOMMEND = "Recommend"
    ANNOTATE = "Annotate"
    SUSPEND = "Suspend"


@dataclass(frozen=True)
class IdlePolicy:
    threshold_percent: float
    idle_for: timedelta
    action: IdleAction

    def __post_init__(self) -> None:
        if math.isnan(self.threshold_percent) or not (0 < self.threshold_percent <= 100):
            raise InvalidPolicy(
                "idlePolicy.thresholdPercent",
                f"{self.threshold_percent} is outside (0, 100]",
                "use e.g. 5 for 5% utilisation",
            )
        if self.idle_for <= timedelta(0):
            raise InvalidPolicy("idlePolicy.idleFor", f"{self.idle_for} is not positive", "use e.g. 30m")


class TrainingAction(StrEnum):
    NO_CHANGE = "NoChange"
    """Busy, starting, or idle for less than the idle duration."""
    HOLD = "Hold"
    """Metrics cannot be used; nothing is known."""
    RECOMMEND_SUSPEND = "RecommendSuspend"
    ANNOTATE_IDLE = "AnnotateIdle"
    SUSPEND = "Suspend"


_ACTIONS = {
    IdleAction.RECOMMEND: TrainingAction.RECOMMEND_SUSPEND,
    IdleAction.ANNOTATE: TrainingAction.ANNOTATE_IDLE,
    IdleAction.SUSPEND: TrainingAction.SUSPEND,
}


@dataclass(frozen=True)
class TrainingDecision:
    action: TrainingAction
    replicas: int
    """Unchanged except for Suspend (0); the executor suspends via spec.suspend when available."""
    current: int
    idle_since: datetime | None
    """Keep and pass back next time; None when the workload is not (known to be) idle."""
    reason: str

    @property
    def changes_replicas(self) -> bool:
        return self.replicas != self.current


def decide_training(
    *,
    policy: IdlePolicy,
    current: int,
    metrics: UsableMetrics | Hold,
    idle_since: datetime | None,
    now: datetime,
) -> TrainingDecision:
    """Decide whether a training workload has been idle long enough to act on."""

    def keep(action: TrainingAction, reason: str) -> TrainingDecision:
        return TrainingDecision(action, current, current, None, reason)

    if current == 0:
        return keep(TrainingAction.NO_CHANGE, "no replicas (suspended, finished or not started)")
    if isinstance(metrics, Hold):
        return keep(TrainingAction.HOLD, f"{metrics.reason}; idle clock restarted, nothing changed")
    if metrics.not_ready:
        return keep(
            TrainingAction.NO_CHANGE,
            f"{len(metrics.not_ready)} replicas not Ready yet ({', '.join(metrics.not_ready)}): "
            "a starting job is not idle",
        )
    threshold = format_percent(policy.threshold_percent)
    busiest = max(metrics.per_pod, key=lambda pod: pod.peak_gpu_percent)
    if busiest.peak_gpu_percent >= policy.threshold_percent:
        return keep(
            TrainingAction.NO_CHANGE,
            f"busy: {busiest.pod} at {format_percent(busiest.peak_gpu_percent)} >= idle threshold "
            f"{threshold}",
        )

    # A remembered start in the future means the clock went backwards: start counting again.
    since = idle_since if idle_since is not None and idle_since <= now else now
    idle_time = now - since
    summary = (
        f"all {metrics.ready_count} replicas below {threshold} (busiest "
        f"{format_percent(busiest.peak_gpu_percent)}) for {format_duration(idle_time)}"
    )
    if idle_time < policy.idle_for:
        return TrainingDecision(
            TrainingAction.NO_CHANGE,
            current,
            current,
            since,
            f"{summary} (< idleFor {format_duration(policy.idle_for)})",
        )
    action = _ACTIONS[policy.action]
    replicas = 0 if action is TrainingAction.SUSPEND else current
    outcome = {
        TrainingAction.RECOMMEND_SUSPEND: "recommend suspending it",
        TrainingAction.ANNOTATE_IDLE: "annotating it as idle",
        TrainingAction.SUSPEND: "suspending it",
    }[action]
    return TrainingDecision(
        action,
        replicas,
        current,
        since,
        f"{summary} (>= idleFor {format_duration(policy.idle_for)}): {outcome}",
    )
