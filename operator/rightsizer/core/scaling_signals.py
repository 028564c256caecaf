"""Replica counts from request-based signals (HPA's Pods, Object and External metrics).

GPU utilisation is a poor signal on its own for LLM serving: a server can be saturated with
requests waiting while its GPUs read 60%. Users scale on requests waiting per replica, KV-cache use
or queue time instead, next to (or instead of) GPU utilisation. Each signal proposes a count with
HPA's arithmetic; the decision takes the largest (``core.replicas``).

- Pods, AverageValue: ``ceil(sum of the pods' values / averageValue)``; a counted pod without a
  value is filled in as HPA fills it (0 against a scale-up, the target against a scale-down) and
  the change survives only if it still holds, in the same direction.
- Object/External, Value: ``ceil(ready × value / target)``; AverageValue: ``ceil(value / target)``.
- Within the tolerance of the direction the count stays. A signal that cannot be read (no series,
  NaN, negative, stale) proposes nothing: the caller leaves it out of a scale-up and lets it
  block a scale-down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.wording import exact, format_number


class SignalKind(StrEnum):
    PODS = "Pods"
    OBJECT = "Object"
    EXTERNAL = "External"


class TargetKind(StrEnum):
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"


@dataclass(frozen=True)
class SignalTarget:
    """One request-based signal and the value it should be held at."""

    name: str
    kind: SignalKind
    target_kind: TargetKind
    target: float

    def __post_init__(self) -> None:
        if not (self.target > 0 and math.isfinite(self.target)):
            raise InvalidPolicy(
                f"metrics[{self.name}].target", f"{self.target} is not positive", "use e.g. 5"
            )
        if self.kind is SignalKind.PODS and self.target_kind is not TargetKind.AVERAGE_VALUE:
            raise InvalidPolicy(
                f"metrics[{self.name}].target.type", "a Pods metric is averaged", "use AverageValue"
            )


@dataclass(frozen=True)
class SignalReading:
    """What one signal read this pass. ``problem`` set: it could not be read (and why)."""

    name: str
    value: float | None = None
    """Object/External: the query's one number."""
    per_pod: Mapping[str, float] | None = None
    """Pods: each counted pod's value; counted pods absent here have no sample."""
    problem: str | None = None


@dataclass(frozen=True)
class Situation:
    """What every signal's arithmetic needs besides its own reading."""

    current: int
    counted: tuple[str, ...]
    """The pods a Pods signal should have a value for (the Ready ones)."""
    tolerances: tuple[float, float]
    """(scale-up, scale-down)."""
    floor: int
    ceiling: int


@dataclass(frozen=True)
class Proposal:
    """A signal's recommended count (None: it could not be read) and the arithmetic behind it."""

    name: str
    replicas: int | None
    reason: str


def propose(signal: SignalTarget, reading: SignalReading | None, at: Situation) -> Proposal:
    """The count ``signal`` asks for, within [floor, ceiling]. Object and External Value targets
    scale the number of Ready pods (the current count when none is Ready)."""
    problem = _unreadable(signal, reading, at.counted)
    if problem is not None:
        return Proposal(signal.name, None, f"{signal.name}: {problem}")
    assert reading is not None  # _unreadable refused a missing reading
    if signal.kind is SignalKind.PODS:
        return _pods(signal, reading, at)
    assert reading.value is not None  # and a single signal without a value
    return _single(signal, exact(reading.value), at)


def _unreadable(signal: SignalTarget, reading: SignalReading | None, counted: tuple[str, ...]) -> str | None:
    if reading is None:
        return "not read"
    if reading.problem is not None:
        return reading.problem
    if signal.kind is SignalKind.PODS:
        values = {pod: v for pod, v in (reading.per_pod or {}).items() if pod in counted}
        if not values:
            return "no counted pod has a value"
        bad = sorted(pod for pod, v in values.items() if not _valid(v))
        return f"unusable value for {', '.join(bad)}" if bad else None
    if reading.value is None:
        return "the query matched nothing"
    return None if _valid(reading.value) else f"unusable value {reading.value!r}"


def _valid(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _pods(signal: SignalTarget, reading: SignalReading, at: Situation) -> Proposal:
    current, counted = at.current, at.counted
    values = {pod: exact(v) for pod, v in (reading.per_pod or {}).items() if pod in counted}
    missing = [pod for pod in counted if pod not in values]
    target = exact(signal.target)
    total = sum(values.values(), Decimal(0))
    ratio = total / len(values) / target
    seen = f"{signal.name} {_show(total / len(values))}/pod vs target {_show(target)}"
    if _within(ratio, at.tolerances):
        return Proposal(signal.name, current, f"{seen}, within tolerance → keep {current}")
    up = ratio > 1
    if missing:
        # HPA's fill: whatever argues against the change the others ask for.
        fill = Decimal(0) if up else target
        total += fill * len(missing)
        filled = total / len(counted) / target
        mean = _show(total / len(counted))
        seen += f"; counting {', '.join(missing)} (no value) as {_show(fill)} gives {mean}"
        if _within(filled, at.tolerances) or (filled > 1) != up:
            return Proposal(signal.name, current, f"{seen} → keep {current}")
    desired = math.ceil(total / target)
    if (up and desired < current) or (not up and desired > current):
        return Proposal(signal.name, current, f"{seen} → keep {current}")
    return _bounded(signal.name, desired, f"{seen} → ceil({_show(total)}/{_show(target)})={desired}", at)


def _single(signal: SignalTarget, value: Decimal, at: Situation) -> Proposal:
    current, base = at.current, len(at.counted) or at.current
    target = exact(signal.target)
    seen = f"{signal.name} {_show(value)} vs target {_show(target)}"
    if signal.target_kind is TargetKind.AVERAGE_VALUE:
        ratio = value / (target * current)
        arithmetic = f"ceil({_show(value)}/{_show(target)})"
        desired = math.ceil(value / target)
        seen += " per replica"
    else:
        ratio = value / target
        arithmetic = f"ceil({base}×{_show(value)}/{_show(target)})"
        desired = math.ceil(base * ratio)
    if _within(ratio, at.tolerances):
        return Proposal(signal.name, current, f"{seen}, within tolerance → keep {current}")
    return _bounded(signal.name, desired, f"{seen} → {arithmetic}={desired}", at)


def _within(ratio: Decimal, tolerances: tuple[float, float]) -> bool:
    tolerance = tolerances[0] if ratio > 1 else tolerances[1]
    return abs(ratio - 1) <= exact(tolerance)


def _bounded(name: str, desired: int, why: str, at: Situation) -> Proposal:
    clamped = min(max(desired, at.floor), at.ceiling)
    if clamped > desired:
        why += f"; raised to minimum {clamped}"
    elif clamped < desired:
        why += f"; capped at maxReplicas {clamped}"
    return Proposal(name, clamped, why)


def _show(value: Decimal) -> str:
    return format_number(float(value))
