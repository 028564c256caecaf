"""Decide, the second step of a workload pass: pure, from the observation and the settings alone.

An inference workload's replica count is decided by ``runtime.replica_step``, the step
``rightsizer backtest`` replays; a training workload's idleness by ``core.idle``. Nothing is decided
while another autoscaler scales the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rightsizer.core.idle import IdleAction, IdlePolicy, TrainingDecision, decide_training
from rightsizer.core.replicas import Decision, ReplicaOutcome
from rightsizer.runtime import mapping
from rightsizer.runtime.replica_step import ReplicaInputs, decide_inference
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.workload_observe import Observation

# Training workloads without an idle policy are watched with this one: recommending changes nothing.
DEFAULT_IDLE_POLICY = IdlePolicy(
    threshold_percent=5.0, idle_for=timedelta(minutes=30), action=IdleAction.RECOMMEND
)


@dataclass(frozen=True)
class WorkloadDecision:
    """What a pass decided, and whether it may act on it. At most one of ``inference`` and ``training``
    is set; neither while another autoscaler scales the target."""

    enforce: bool
    """Act on it: Enforce mode, not a dry run, and no other autoscaler scales the target."""
    idle_since: datetime | None
    """The idle clock to keep in status."""
    inference: ReplicaOutcome | None = None
    """An inference workload's replica decision and the stabilisation state it leaves."""
    training: TrainingDecision | None = None

    @property
    def decided(self) -> Decision | TrainingDecision | None:
        return self.inference.decision if self.inference is not None else self.training


def decide(observed: Observation, settings: Settings) -> WorkloadDecision:
    spec = observed.spec
    enforce = spec.mode == "Enforce" and not settings.dry_run and observed.conflict is None
    if observed.conflict is not None:
        return WorkloadDecision(enforce, observed.idle_since)
    if (read := observed.inference) is not None:
        inputs = ReplicaInputs(
            observed.scale.desired,
            observed.metrics,
            observed.roles.ready,
            read.readings,
            read.wake_signal,
            observed.now,
        )
        outcome = decide_inference(spec, inputs, read.history, read.scale_events, settings.interval_seconds)
        return WorkloadDecision(enforce, observed.idle_since, inference=outcome)
    training = decide_training(
        policy=mapping.idle_policy(spec) or DEFAULT_IDLE_POLICY,
        current=observed.scale.desired,
        metrics=observed.metrics,
        idle_since=observed.idle_since,
        now=observed.now,
    )
    return WorkloadDecision(enforce, training.idle_since, training=training)
