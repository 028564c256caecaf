"""Act, the third step of a workload pass: carry out the decision and say what happened.

The only writes are the target's replicas or suspend field (where its kind keeps them, see
adapters.workload_kinds) and its idle-since annotation; the scaling state goes onto the GPUWorkload
with the status, through the caller's patch. In Recommend mode nothing that runs is changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rightsizer.adapters.kube import TargetApi
from rightsizer.core.idle import TrainingAction, TrainingDecision
from rightsizer.core.replicas import ReplicaOutcome
from rightsizer.core.scaling_rate import ScaleEvent
from rightsizer.core.status import encode_scaling_state
from rightsizer.core.timestamps import format_precise
from rightsizer.runtime.events import Event
from rightsizer.runtime.workload_decide import WorkloadDecision
from rightsizer.runtime.workload_memory import ScalingStateMemory
from rightsizer.runtime.workload_observe import InferenceReadings, Observation

IDLE_SINCE = "rightsizer.io/idle-since"


@dataclass(frozen=True)
class Acted:
    """What acting on a decision did."""

    events: tuple[Event, ...] = ()
    """What was changed, as events to post on the GPUWorkload."""
    scale_events: tuple[ScaleEvent, ...] = ()
    """The scale events the rate limits keep counting: a decision's own only once its scale was made."""
    scaling_state: str | None = None
    """The stabilisation state to store on the GPUWorkload; None when no replica count was decided."""


def act(
    observed: Observation, decision: WorkloadDecision, *, kube: TargetApi, scaling: ScalingStateMemory
) -> Acted:
    if decision.inference is not None and observed.inference is not None:
        return _scale(
            observed,
            observed.inference,
            decision.inference,
            enforce=decision.enforce,
            kube=kube,
            scaling=scaling,
        )
    if decision.training is not None:
        return Acted(events=_suspend_or_annotate(observed, decision.training, decision.enforce, kube))
    return Acted()


def _scale(
    observed: Observation,
    read: InferenceReadings,
    outcome: ReplicaOutcome,
    *,
    enforce: bool,
    kube: TargetApi,
    scaling: ScalingStateMemory,
) -> Acted:
    decision = outcome.decision
    kept_events = read.scale_events
    events: tuple[Event, ...] = ()
    # A kind with no replica count the operator can set is recommended on only.
    if decision.changes_replicas and enforce and observed.scale.can_scale:
        kube.set_replicas(observed.header.namespace, observed.ref, decision.replicas)
        kept_events = outcome.scale_events  # a scale event counts only once it has happened
        events = (Event("Normal", str(decision.action), decision.reason),)
    state = encode_scaling_state(outcome.history, kept_events)
    scaling.wrote(observed.header.key, state)
    return Acted(events=events, scale_events=kept_events, scaling_state=state)


def _suspend_or_annotate(
    observed: Observation, decision: TrainingDecision, enforce: bool, kube: TargetApi
) -> tuple[Event, ...]:
    namespace, ref, scale = observed.header.namespace, observed.ref, observed.scale
    action, since = decision.action, decision.idle_since
    events: list[Event] = []
    if action == TrainingAction.SUSPEND and enforce and scale.desired > 0 and not scale.suspended:
        if scale.can_suspend:
            kube.suspend(namespace, ref)
        elif scale.can_scale:
            kube.set_replicas(namespace, ref, 0)
        if scale.can_suspend or scale.can_scale:
            said = f"{ref.kind}/{ref.name} idle since {since}; suspended"
            events.append(Event("Normal", "Suspended", said))
    if action in (TrainingAction.ANNOTATE_IDLE, TrainingAction.SUSPEND, TrainingAction.RECOMMEND_SUSPEND):
        stamp = format_precise(since) if since is not None else None
        if stamp is not None and scale.annotations.get(IDLE_SINCE) != stamp:
            # Annotating is allowed in Recommend mode: it changes nothing that runs.
            kube.annotate_target(namespace, ref, {IDLE_SINCE: stamp})
            events.append(Event("Warning", "Idle", f"GPUs of {ref.kind}/{ref.name} idle since {stamp}"))
    elif scale.annotations.get(IDLE_SINCE):
        kube.annotate_target(namespace, ref, {IDLE_SINCE: None})
    return tuple(events)
