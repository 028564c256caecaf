"""How many replicas an inference workload should run, and why.

The arithmetic is the Horizontal Pod Autoscaler's, so users' intuition carries over:

1. ``desired = ceil(ready * observed / target)``, unless ``|observed/target - 1| <= tolerance``;
   while pods are still starting, a scale-up counts them as idle (HPA does the same) so a
   burst of new pods is not multiplied again before they take load.
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from rightsizer.api.durations import format_duration
from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.metrics_view import Hold, UsableMetrics, weighted_total
from rightsizer.core.scaling_rate import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    ScaleEvent,
    StepRule,
    limit_rate,
    recent_events,
)
from rightsizer.core.wording import TIMES, format_percent

SHARED_GPU = "SharedGpu"


class ReplicaAction(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    WAKE_UP = "WakeUp"
    NO_CHANGE = "NoChange"
    HOLD = "Hold"


@dataclass(frozen=True)
class ScalingPolicy:
    """What the user asked for, independent of how the API spells it."""

    min_replicas: int
    max_replicas: int
    target_utilization: float
    tolerance: float = 0.1
    tolerance_up: float | None = None
    """Per direction, as HPA's behavior.scaleUp/scaleDown.tolerance; None: ``tolerance``."""
    tolerance_down: float | None = None
    scale_up: StepRule = DEFAULT_SCALE_UP
    scale_down: StepRule = DEFAULT_SCALE_DOWN
    idle_threshold_percent: float = 1.0
    """With min_replicas == 0: a replica below this is idle (scale-to-zero candidate)."""
    wake_threshold: float = 0.0
    """With min_replicas == 0: a wake-up signal above this wakes the workload or keeps it up."""
    wake_replicas: int = 1
    """Replicas to start when waking from zero (at least 1, at most max_replicas)."""
    zero_after: timedelta | None = None
    """With min_replicas == 0: how long every observation must have recommended zero before
    scaling to zero; None means the scale-down stabilisation window."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise InvalidPolicy("minReplicas", f"{self.min_replicas} is negative", "use 0 or more")
        if self.max_replicas < 1:
            raise InvalidPolicy("maxReplicas", f"{self.max_replicas} is below 1", "use 1 or more")
        if self.min_replicas > self.max_replicas:
            raise InvalidPolicy(
                "minReplicas",
                f"{self.min_replicas} is greater than maxReplicas {self.max_replicas}",
                "lower minReplicas or raise maxReplicas",
            )
        if not (0 < self.target_utilization <= 100) or math.isnan(self.target_utilization):
            raise InvalidPolicy(
                "targetUtilization", f"{self.target_utilization} is outside (0, 100]", "use e.g. 60"
            )
        if not (0 <= self.tolerance < 1):
            raise InvalidPolicy("tolerance", f"{self.tolerance} is outside [0, 1)", "use e.g. 0.1 for 10%")
        for name, value in (
            ("scaleUp.tolerance", self.tolerance_up),
            ("scaleDown.tolerance", self.tolerance_down),
        ):
            if value is not None and (not value >= 0 or math.isinf(value)):
                raise InvalidPolicy(name, f"{value} is not a finite number >= 0", "use e.g. 0.1 for 10%")
        if not (0 <= self.idle_threshold_percent <= 100):
            raise InvalidPolicy(
                "idleThresholdPercent", f"{self.idle_threshold_percent} is outside [0, 100]", "use e.g. 1"
            )
        if self.wake_replicas < 1:
            raise InvalidPolicy("wakeReplicas", f"{self.wake_replicas} is below 1", "use 1 or more")
        if self.zero_after is not None and self.zero_after < timedelta(0):
            raise InvalidPolicy("wakeUp.cooldown", f"{self.zero_after} is negative", "use e.g. 5m")

    def tolerance_for(self, up: bool) -> float:
        """The tolerance of a scale-up (``up``) or of a scale-down."""
        chosen = self.tolerance_up if up else self.tolerance_down
        return self.tolerance if chosen is None else chosen

    @property
    def zero_window(self) -> timedelta:
        return self.scale_down.window if self.zero_after is None else self.zero_after

    @property
    def longest_window(self) -> timedelta:
        """How much recommendation history the decisions need."""
        return max(self.scale_up.window, self.scale_down.window, self.zero_window)


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
) -> ReplicaOutcome:
    """Decide the replica count of an inference workload.

    ``max_history_gap`` (normally two intervals): if the history stops earlier than this, the
    windows restart from the current count, so an operator that was down, or a history with
    holes, never counts as "idle for the whole window". ``wake_signal`` is the wake-up metric
    (None when it could not be read).
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

    unknown = metrics.reason if isinstance(metrics, Hold) else None  # some Ready pods have no sample
    if isinstance(metrics, Hold):
        if metrics.partial is None:
            # Recording the current count keeps the windows honest: a hold is not idle time.
            reason = f"holding at {current}: {metrics.reason}"
            return outcome(ReplicaAction.HOLD, current, reason, recorded=current)
        metrics = metrics.partial
        raw, why = _with_missing_filled(policy, current, metrics)
    else:
        raw, why = _raw_recommendation(policy, current, metrics, wake_signal)
    stabilised, stabilise_why = _stabilise(policy, current, raw, kept, now)
    final, limit_why = limit_rate(
        policy.scale_up if stabilised > current else policy.scale_down, current, stabilised, events, now
    )
    reason = _join(why, stabilise_why, limit_why)
    if final < current and metrics.shared_pods:
        # Time-sliced or MPS GPUs report the device's activity to every sharer: it says nothing of
        # how much of it this workload does, so it never removes a replica on its own.
        shared = ", ".join(metrics.shared_pods)
        reason = (
            f"holding at {current}: {SHARED_GPU} ({shared} share a GPU with other pods, so the numbers "
            f"are the device's); {reason}"
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


def _raw_recommendation(
    policy: ScalingPolicy, current: int, metrics: UsableMetrics, wake_signal: float | None
) -> tuple[int, str]:
    """The unstabilised recommendation within [min, max], and the arithmetic behind it."""
    note = ""
    if policy.min_replicas == 0:
        zero, note = _idle_verdict(policy, metrics, wake_signal)
        if zero:
            return 0, note

    target = policy.target_utilization
    observed = metrics.aggregate
    # Decimal arithmetic, so the numbers users read are the numbers compared: 66% against 60% is
    # exactly 10% over (floats say 10.000000000000009%), and 0.4 + 79.9 + 39.7 over 60 is exactly 2
    # replicas (floats sum to 120.00000000000001 and ask for 3).
    exact_target = _decimal(target)
    # Pods weighted by their GPUs, as HPA weights them by request: total is in pod-equivalents.
    total = weighted_total(metrics.per_pod)
    ratio = total / metrics.ready_count / exact_target
    up = ratio > 1
    exact_tolerance = _decimal(policy.tolerance_for(up))
    tolerance = format_percent(policy.tolerance_for(up) * 100)
    if abs(ratio - 1) <= exact_tolerance:
        return current, _join(
            note,
            f"util {format_percent(observed)} within target {format_percent(target)} "
            f"{_band(policy, up)}{tolerance} → keep {current}",
        )
    if ratio > 1 and metrics.not_ready:
        # HPA's guard: count starting pods as idle before scaling up again.
        starting = len(metrics.not_ready)
        spread = total / (metrics.ready_count + starting)
        if spread / exact_target <= 1 + exact_tolerance:
            return current, _join(
                note,
                f"util {format_percent(observed)} > target {format_percent(target)}, but spread over "
                f"{starting} starting pods it is {format_percent(float(spread))} → keep {current}",
            )

    desired = math.ceil(total / exact_target)
    direction = ">" if ratio > 1 else "<"
    sign = "+" if ratio > 1 else "-"
    arithmetic = f"ceil({metrics.ready_count}{TIMES}{_number(observed)}/{_number(target)})={desired}"
    why = (
        f"util {format_percent(observed)} {direction} target {format_percent(target)} "
        f"({sign}{tolerance} tolerance) → {arithmetic}"
    )
    floor = max(policy.min_replicas, 1)
    clamped = min(max(desired, floor), policy.max_replicas)
    if clamped > desired:
        why += f"; raised to minimum {clamped}"
    elif clamped < desired:
        why += f"; capped at maxReplicas {clamped}"
    return clamped, _join(note, why)


def _band(policy: ScalingPolicy, up: bool) -> str:
    """± while both directions share a tolerance, else the side that applies."""
    if policy.tolerance_for(True) == policy.tolerance_for(False):
        return "±"
    return "+" if up else "-"


def _with_missing_filled(policy: ScalingPolicy, current: int, metrics: UsableMetrics) -> tuple[int, str]:
    """HPA's rule for Ready pods without a sample: each counts as whatever argues against the change
    the others ask for (0% against a scale-up, 100% against a scale-down; starting pods as 0%
    against a scale-up too). A change survives only if it still holds then, in the same direction.
    Never to zero: an unknown pod is not idle."""
    target = _decimal(policy.target_utilization)
    reported = weighted_total(metrics.per_pod)
    ratio = reported / metrics.ready_count / target
    missing = ", ".join(metrics.missing)
    seen = (
        f"util {format_percent(float(reported / metrics.ready_count))} on the {metrics.ready_count} "
        f"Ready pods that reported"
    )
    if ratio == 1:
        return current, f"{seen}, at target; {missing} unknown → keep {current}"
    up = ratio > 1
    fill, counted = (
        (Decimal(0), len(metrics.missing) + len(metrics.not_ready))
        if up
        else (Decimal(100), len(metrics.missing))
    )
    total = reported + fill * counted
    pods = metrics.ready_count + counted
    new_ratio = total / pods / target
    starting = f" and starting {', '.join(metrics.not_ready)}" if up and metrics.not_ready else ""
    filled = (
        f"{seen}; counting {missing}{starting} as {format_percent(float(fill))} (no sample: as HPA does) "
        f"gives {format_percent(float(total / pods))}"
    )
    desired = math.ceil(total / target)
    if (
        abs(new_ratio - 1) <= _decimal(policy.tolerance_for(new_ratio > 1))
        or (new_ratio > 1) != up
        or (up and desired < current)
        or (not up and desired > current)
    ):
        return current, f"{filled} → keep {current}"
    clamped = min(max(desired, policy.min_replicas, 1), policy.max_replicas)
    return clamped, f"{filled} vs target {format_percent(policy.target_utilization)} → {clamped}"


def _idle_verdict(
    policy: ScalingPolicy, metrics: UsableMetrics, wake_signal: float | None
) -> tuple[bool, str]:
    """Whether this observation recommends zero replicas; a note when idle but kept up."""
    if metrics.not_ready:
        return False, ""  # starting pods are neither idle nor busy: a starting workload stays up
    if any(pod.peak_gpu_percent >= policy.idle_threshold_percent for pod in metrics.per_pod):
        return False, ""
    threshold = format_percent(policy.idle_threshold_percent)
    idle = f"all {metrics.ready_count} replicas below idle threshold {threshold}"
    if wake_signal is None or not math.isfinite(wake_signal):
        return False, (
            f"{idle}, but the wake-up signal is unavailable and nothing could wake it: not scaling to zero"
        )
    if wake_signal > policy.wake_threshold:
        return False, (
            f"{idle}, but wake-up signal {wake_signal:g} > {policy.wake_threshold:g}: not scaling to zero"
        )
    return True, f"{idle} and wake-up signal {wake_signal:g} ≤ {policy.wake_threshold:g} → 0"


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _number(value: float) -> str:
    return format_percent(value)[:-1]


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
