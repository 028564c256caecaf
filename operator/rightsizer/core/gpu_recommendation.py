"""The replica count GPU utilisation asks for: HPA's arithmetic on the pods' GPUs.

1. ``desired = ceil(ready * observed / target)``, unless ``|observed/target - 1| <= tolerance``;
   while pods are still starting, a scale-up counts them as idle (HPA does the same) so a burst of
   new pods is not multiplied again before they take load.
2. Ready pods without a sample are filled in as HPA fills them (see ``gpu_with_missing_filled``).
3. With ``min_replicas == 0``: zero once every Ready replica is below the idle threshold and the
   wake-up signal is readable and quiet.
"""

from __future__ import annotations

import math
from decimal import Decimal

from rightsizer.core.metrics_view import UsableMetrics, weighted_total
from rightsizer.core.scaling_policy import ScalingPolicy
from rightsizer.core.wording import TIMES, exact, format_number, format_percent, join_reasons


def gpu_recommendation(
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
    exact_target = exact(target)
    # Pods weighted by their GPUs, as HPA weights them by request: total is in pod-equivalents.
    total = weighted_total(metrics.per_pod)
    ratio = total / metrics.ready_count / exact_target
    up = ratio > 1
    exact_tolerance = exact(policy.tolerance_for(up))
    tolerance = format_percent(policy.tolerance_for(up) * 100)
    if abs(ratio - 1) <= exact_tolerance:
        return current, join_reasons(
            note,
            f"util {format_percent(observed)} within target {format_percent(target)} "
            f"{_band(policy, up)}{tolerance} → keep {current}",
        )
    if ratio > 1 and metrics.not_ready:
        # HPA's guard: count starting pods as idle before scaling up again.
        starting = len(metrics.not_ready)
        spread = total / (metrics.ready_count + starting)
        if spread / exact_target <= 1 + exact_tolerance:
            return current, join_reasons(
                note,
                f"util {format_percent(observed)} > target {format_percent(target)}, but spread over "
                f"{starting} starting pods it is {format_percent(float(spread))} → keep {current}",
            )

    desired = math.ceil(total / exact_target)
    direction = ">" if ratio > 1 else "<"
    sign = "+" if ratio > 1 else "-"
    arithmetic = (
        f"ceil({metrics.ready_count}{TIMES}{format_number(observed)}/{format_number(target)})={desired}"
    )
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
    return clamped, join_reasons(note, why)


def _band(policy: ScalingPolicy, up: bool) -> str:
    """± while both directions share a tolerance, else the side that applies."""
    if policy.tolerance_for(True) == policy.tolerance_for(False):
        return "±"
    return "+" if up else "-"


def gpu_with_missing_filled(policy: ScalingPolicy, current: int, metrics: UsableMetrics) -> tuple[int, str]:
    """HPA's rule for Ready pods without a sample: each counts as whatever argues against the change
    the others ask for (0% against a scale-up, 100% against a scale-down; starting pods as 0%
    against a scale-up too). A change survives only if it still holds then, in the same direction.
    Never to zero: an unknown pod is not idle."""
    target = exact(policy.target_utilization)
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
        abs(new_ratio - 1) <= exact(policy.tolerance_for(new_ratio > 1))
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
