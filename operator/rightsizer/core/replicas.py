"""How many replicas an inference workload should run, and why.

The arithmetic is the Horizontal Pod Autoscaler's, so users' intuition carries over:

1. Each signal proposes a count: GPU utilisation (``core.gpu_recommendation``) and request-based
   signals (``core.scaling_signals``). The largest wins, as HPA takes the largest over its
   metrics; a signal that cannot be read is left out of a scale-up and blocks a scale-down.
2. Stabilisation over a history of raw recommendations: scale-down follows the *highest*
   recommendation in the scale-down window, scale-up the *lowest* in the scale-up window.
3. Rate limits (``core.scaling_rate``): HPA's Pods and Percent policies per direction, counting
   the scale events already made in each policy's period; selectPolicy Max, Min or Disabled.
4. Clamp to [minReplicas, maxReplicas].

On top of HPA: scale to zero (``min_replicas == 0``) once every Ready replica has been below the
idle threshold for the whole scale-down window, and wake from zero when the wake-up signal (e.g.
a request rate) exceeds its threshold. Missing or unusable data never scales anything, and never
to zero: a workload at zero with no readable wake-up signal stays where it is.

The caller keeps the recommendation history and scale events between calls (they are returned
updated) so a restarted operator resumes the same windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rightsizer.api.durations import format_duration
from rightsizer.core.gpu_recommendation import gpu_recommendation, gpu_with_missing_filled
from rightsizer.core.metrics_view import Hold, UsableMetrics
from rightsizer.core.scaling_policy import ScalingPolicy
from rightsizer.core.scaling_rate import ScaleEvent, limit_rate, recent_events
from rightsizer.core.scaling_signals import Proposal, SignalReading, Situation, propose
from rightsizer.core.wording import join_reasons

SHARED_GPU = "SharedGpu"
GPU_SIGNAL = "GPU utilisation"


class ReplicaAction(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    WAKE_UP = "WakeUp"
    NO_CHANGE = "NoChange"
    HOLD = "Hold"


@dataclass(frozen=True)
class Recommendation:
    """A raw (unstabilised) recommendation, remembered for the stabilisation windows."""

    time: datetime
    replicas: int


@dataclass(frozen=True)
class Decision:
    action: ReplicaAction
    replicas: int
    current: int
    reason: str
    code: str | None = None
    """A reason code where the action alone does not say why (a hold on shared GPUs)."""

    @property
    def changes_replicas(self) -> bool:
        return self.replicas != self.current


@dataclass(frozen=True)
class ReplicaOutcome:
    """The decision plus the state to keep until the next call.

    ``history`` is always kept. ``scale_events`` already includes this decision's change: keep it
    only once the scale was applied (in Recommend mode, or if the scale call failed, keep the
    previous events).
    """

    decision: Decision
    history: tuple[Recommendation, ...]
    scale_events: tuple[ScaleEvent, ...]


def decide_replicas(
    *,
    policy: ScalingPolicy,
    current: int,
    metrics: UsableMetrics | Hold,
    history: Sequence[Recommendation],
    scale_events: Sequence[ScaleEvent],
    now: datetime,
    max_history_gap: timedelta,
    wake_signal: float | None = None,
    readings: Mapping[str, SignalReading] | None = None,
    ready_pods: Sequence[str] = (),
) -> ReplicaOutcome:
    """Decide the replica count of an inference workload.

    ``max_history_gap`` (normally two intervals): if the history stops earlier than this, the
    windows restart from the current count, so an operator that was down, or a history with
    holes, never counts as "idle for the whole window". ``wake_signal`` is the wake-up metric
    (None when it could not be read). ``readings`` are the request signals' values by name, and
    ``ready_pods`` the pods a Pods signal should have a value for.
    """
    if current < 0:
        raise ValueError(f"current replicas {current} is negative")
    kept = _continuous_history(history, current, now, max_history_gap)
    events = recent_events(
        scale_events, now, max(policy.scale_up.longest_period, policy.scale_down.longest_period)
    )

    def outcome(
        action: ReplicaAction, replicas: int, reason: str, recorded: int, code: str | None = None
    ) -> ReplicaOutcome:
        updated = _prune([*kept, Recommendation(now, recorded)], now, policy.longest_window)
        new_events = (*events, ScaleEvent(now, replicas - current)) if replicas != current else events
        return ReplicaOutcome(Decision(action, replicas, current, reason, code), updated, new_events)

    if current == 0:
        action, replicas, reason = _from_zero(policy, wake_signal)
        return outcome(action, replicas, reason, recorded=replicas)

    # Out-of-range counts are corrected first, without metrics or windows, as HPA does.
    if current > policy.max_replicas:
        bound = policy.max_replicas
        reason = f"{current} replicas > maxReplicas {bound} → {bound}"
        return outcome(ReplicaAction.SCALE_DOWN, bound, reason, recorded=bound)
    if current < policy.min_replicas:
        bound = policy.min_replicas
        reason = f"{current} replicas < minReplicas {bound} → {bound}"
        return outcome(ReplicaAction.SCALE_UP, bound, reason, recorded=bound)

    proposals: list[Proposal] = []
    unknown: str | None = None  # some Ready pods have no sample
    shared: tuple[str, ...] = ()
    if policy.scales_on_gpu:
        if isinstance(metrics, Hold) and metrics.partial is None:
            if not policy.signals:
                # Recording the current count keeps the windows honest: a hold is not idle time.
                reason = f"holding at {current}: {metrics.reason}"
                return outcome(ReplicaAction.HOLD, current, reason, recorded=current)
            proposals.append(Proposal(GPU_SIGNAL, None, f"{GPU_SIGNAL}: {metrics.reason}"))
        elif isinstance(metrics, Hold):
            assert metrics.partial is not None
            unknown, shared = metrics.reason, metrics.partial.shared_pods
            proposals.append(Proposal(GPU_SIGNAL, *gpu_with_missing_filled(policy, current, metrics.partial)))
        else:
            shared = metrics.shared_pods
            proposals.append(Proposal(GPU_SIGNAL, *gpu_recommendation(policy, current, metrics, wake_signal)))
    at = Situation(current, tuple(ready_pods), policy.tolerances, policy.min_replicas, policy.max_replicas)
    proposals.extend(propose(signal, (readings or {}).get(signal.name), at) for signal in policy.signals)
    raw, why = _largest(policy, current, proposals, wake_signal)
    if raw is None:
        reason = f"holding at {current}: {why}"
        return outcome(ReplicaAction.HOLD, current, reason, recorded=current)
    stabilised, stabilise_why = _stabilise(policy, current, raw, kept, now)
    final, limit_why = limit_rate(
        policy.scale_up if stabilised > current else policy.scale_down, current, stabilised, events, now
    )
    reason = join_reasons(why, stabilise_why, limit_why)
    if final < current and shared:
        # Time-sliced or MPS GPUs report the device's activity to every sharer: it says nothing of
        # how much of it this workload does, so it never removes a replica on its own.
        reason = (
            f"holding at {current}: {SHARED_GPU} ({', '.join(shared)} share a GPU with other pods, so "
            f"the numbers are the device's); {reason}"
        )
        return outcome(ReplicaAction.HOLD, current, reason, recorded=current, code=SHARED_GPU)
    if final == current and unknown is not None:
        return outcome(
            ReplicaAction.HOLD, current, f"holding at {current}: {unknown}; {reason}", recorded=raw
        )
    if final == current:
        action = ReplicaAction.NO_CHANGE
    elif final > current:
        action = ReplicaAction.SCALE_UP
    elif final == 0:
        action = ReplicaAction.SCALE_TO_ZERO
    else:
        action = ReplicaAction.SCALE_DOWN
    return outcome(action, final, reason, recorded=raw)


def _from_zero(policy: ScalingPolicy, wake_signal: float | None) -> tuple[ReplicaAction, int, str]:
    if policy.min_replicas > 0:
        # Someone scaled the target to zero by hand; HPA treats that as "autoscaling off" too.
        return (
            ReplicaAction.HOLD,
            0,
            f"target has 0 replicas but minReplicas is {policy.min_replicas}: it was scaled to zero "
            "outside the operator, so scaling is paused until it has replicas again",
        )
    if wake_signal is None or not math.isfinite(wake_signal):
        return ReplicaAction.HOLD, 0, "at zero and the wake-up signal is unavailable: staying at 0"
    if wake_signal > policy.wake_threshold:
        target = min(policy.wake_replicas, policy.max_replicas)
        reason = f"wake-up signal {wake_signal:g} > threshold {policy.wake_threshold:g} → {target}"
        return ReplicaAction.WAKE_UP, target, reason
    reason = f"at zero; wake-up signal {wake_signal:g} ≤ threshold {policy.wake_threshold:g}"
    return ReplicaAction.NO_CHANGE, 0, reason


def _largest(
    policy: ScalingPolicy, current: int, proposals: Sequence[Proposal], wake_signal: float | None
) -> tuple[int | None, str]:
    """HPA's rule over several metrics: the largest proposal; one that could not be read is left
    out of a scale-up and blocks a scale-down. None when no signal could be read."""
    readable = [p for p in proposals if p.replicas is not None]
    unreadable = [p for p in proposals if p.replicas is None]
    why = "; ".join(p.reason for p in proposals)
    if not readable:
        return None, why if len(proposals) == 1 else f"no signal could be read ({why})"
    largest = max(readable, key=lambda p: p.replicas or 0)
    raw = largest.replicas or 0
    if len(proposals) > 1:
        why = f"largest of {len(proposals)} signals: {largest.name} → {raw} ({why})"
    if unreadable and raw < current:
        names = ", ".join(p.name for p in unreadable)
        return current, f"{why}; {names} unreadable, which blocks a scale-down → keep {current}"
    if raw == 0 and not policy.scales_on_gpu and not _quiet(policy, wake_signal):
        # Without the GPU's idle verdict, zero still needs a readable, quiet wake-up signal.
        return 1, f"{why}; the wake-up signal is unreadable or above its threshold: not to zero → 1"
    return raw, why


def _quiet(policy: ScalingPolicy, wake_signal: float | None) -> bool:
    return wake_signal is not None and math.isfinite(wake_signal) and wake_signal <= policy.wake_threshold


def _stabilise(
    policy: ScalingPolicy, current: int, raw: int, history: Sequence[Recommendation], now: datetime
) -> tuple[int, str]:
    if raw == 0:
        return _stabilise_to_zero(policy, current, history, now)
    up_cutoff = now - policy.scale_up.window
    down_cutoff = now - policy.scale_down.window
    up_floor = min([raw, *(r.replicas for r in history if r.time > up_cutoff)])
    down_ceiling = max([raw, *(r.replicas for r in history if r.time > down_cutoff)])
    # HPA's order: raise to the scale-up floor, then lower to the scale-down ceiling.
    stabilised = min(max(current, up_floor), down_ceiling)
    if stabilised == raw:
        return stabilised, ""
    if raw < current:
        window = format_duration(policy.scale_down.window)
        return stabilised, (
            f"scale-down waits for the {window} stabilisation window "
            f"(highest recommendation in it: {down_ceiling}) → {stabilised}"
        )
    window = format_duration(policy.scale_up.window)
    return stabilised, (
        f"scale-up waits for the {window} stabilisation window "
        f"(lowest recommendation in it: {up_floor}) → {stabilised}"
    )


def _stabilise_to_zero(
    policy: ScalingPolicy, current: int, history: Sequence[Recommendation], now: datetime
) -> tuple[int, str]:
    """Zero only when every observation over the zero window recommended zero.

    The history is continuous (see ``_continuous_history``), so the trailing run of zero
    recommendations measures how long the workload has really been idle.
    """
    zero_since = now
    for record in reversed(history):
        if record.replicas != 0:
            break
        zero_since = record.time
    idle_for = now - zero_since
    window = format_duration(policy.zero_window)
    if idle_for >= policy.zero_window:
        return 0, f"idle for {format_duration(idle_for)} (>= {window})"
    # Not yet: shrink as an ordinary scale-down would, but keep one replica until the window ends.
    down_cutoff = now - policy.scale_down.window
    down_ceiling = max([0, *(r.replicas for r in history if r.time > down_cutoff)])
    stabilised = max(min(current, down_ceiling), 1)
    return stabilised, (
        f"scale to zero waits until idle for {window} (idle for {format_duration(idle_for)}) → {stabilised}"
    )


def _continuous_history(
    history: Sequence[Recommendation], current: int, now: datetime, max_gap: timedelta
) -> list[Recommendation]:
    # Records "from the future" mean the clock went backwards; they cannot be placed in a window.
    usable = sorted((r for r in history if r.time <= now), key=lambda r: r.time)
    if not usable or now - usable[-1].time > max_gap:
        # HPA seeds a fresh window with the current count, so a (re)start never scales down at once.
        return [Recommendation(now, current)]
    return usable


def _prune(
    history: Sequence[Recommendation], now: datetime, longest: timedelta
) -> tuple[Recommendation, ...]:
    cutoff = now - longest
    inside = [r for r in history if r.time > cutoff]
    older = [r for r in history if r.time <= cutoff]
    # Keep the newest record at or before the window start: it shows whether a run of zero
    # recommendations began before the window did (HPA likewise keeps one old sample).
    return tuple(older[-1:] + inside)
