"""How fast replicas may change: HPA's ``behavior.scaleUp``/``scaleDown`` rules, as data and arithmetic.

Separate from the replica decision because it is a self-contained rule with its own table of
cases (Kubernetes' HPA documentation): each direction has a stabilisation window and a list of
rate policies (at most N pods, or N percent, per period); ``select`` picks the policy allowing
the largest change (Max, HPA's default), the smallest (Min), or none (Disabled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rightsizer.api.durations import format_duration
from rightsizer.core.errors import InvalidPolicy


class Select(StrEnum):
    """Which rate policy applies when several allow different changes (HPA's selectPolicy)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class LimitKind(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


@dataclass(frozen=True)
class RateLimit:
    """At most ``value`` pods (or percent of the replicas at the start of the period) per period."""

    kind: LimitKind
    value: int
    period_seconds: int = 15

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise InvalidPolicy("policies.value", f"{self.value} would forbid scaling", "use 1 or more")
        if self.period_seconds <= 0:
            raise InvalidPolicy(
                "policies.periodSeconds", f"{self.period_seconds} is not positive", "use 1 or more"
            )

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.period_seconds)

    def describe(self) -> str:
        amount = f"{self.value} pods" if self.kind is LimitKind.PODS else f"{self.value}%"
        return f"{amount} per {format_duration(self.period)}"


@dataclass(frozen=True)
class StepRule:
    """One direction of HPA ``behavior``: stabilisation window and how fast replicas may change.

    With no limits the step is unlimited (the API always supplies HPA's defaults when unset).
    """

    stabilization_seconds: int = 0
    limits: tuple[RateLimit, ...] = ()
    select: Select = Select.MAX

    def __post_init__(self) -> None:
        if self.stabilization_seconds < 0:
            raise InvalidPolicy(
                "stabilizationWindowSeconds", f"{self.stabilization_seconds} is negative", "use 0 or more"
            )

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.stabilization_seconds)

    @property
    def longest_period(self) -> timedelta:
        """How much scale-event history the limits need."""
        return max((limit.period for limit in self.limits), default=timedelta(0))


# HPA's defaults: scale up at once by the larger of 4 pods or 100% per 15 s; scale down after a
# 5-minute window, by up to 100% per 15 s.
DEFAULT_SCALE_UP = StepRule(
    stabilization_seconds=0,
    limits=(RateLimit(LimitKind.PODS, 4, 15), RateLimit(LimitKind.PERCENT, 100, 15)),
)
DEFAULT_SCALE_DOWN = StepRule(stabilization_seconds=300, limits=(RateLimit(LimitKind.PERCENT, 100, 15),))


@dataclass(frozen=True)
class ScaleEvent:
    """A scale that was applied: ``change`` is positive for up, negative for down."""

    time: datetime
    change: int


def limit_rate(
    rule: StepRule, current: int, desired: int, events: Sequence[ScaleEvent], now: datetime
) -> tuple[int, str]:
    """``desired`` held to what ``rule`` allows from ``current``, and why when it was held.

    As HPA: each policy counts the changes already made within its own period back to the
    replicas at the period's start; Percent rounds a scale-up up (so 1 replica can grow) and a
    scale-down's remainder down; a limit never reverses the direction.
    """
    if desired == current:
        return desired, ""
    up = desired > current
    verb = "scale-up" if up else "scale-down"
    if rule.select is Select.DISABLED:
        return current, f"{verb} disabled (selectPolicy Disabled) → keep {current}"
    if not rule.limits:
        return desired, ""
    proposals = [_proposal(limit, up, current, events, now) for limit in rule.limits]
    # Max means the largest change: the highest count up, the lowest count down.
    widest = (max if up else min)(proposals)
    narrowest = (min if up else max)(proposals)
    limit = widest if rule.select is Select.MAX else narrowest
    limit = max(limit, current) if up else min(limit, current)
    if (up and desired <= limit) or (not up and desired >= limit):
        return desired, ""
    return limit, f"{verb} limited to {limit} ({_limits_text(rule, up, events, now)})"


def _proposal(limit: RateLimit, up: bool, current: int, events: Sequence[ScaleEvent], now: datetime) -> int:
    added, removed = changes_in_period(events, now, limit.period)
    start = current - added + removed
    if limit.kind is LimitKind.PODS:
        return start + limit.value if up else start - limit.value
    if up:
        return -(-start * (100 + limit.value) // 100)
    return max(start * (100 - limit.value) // 100, 0)


def _limits_text(rule: StepRule, up: bool, events: Sequence[ScaleEvent], now: datetime) -> str:
    verb = "added" if up else "removed"
    parts = []
    for limit in rule.limits:
        added, removed = changes_in_period(events, now, limit.period)
        parts.append(f"{limit.describe()}, {added if up else removed} already {verb} in it")
    if len(parts) == 1:
        return f"at most {parts[0]}"
    chosen = "the larger" if rule.select is Select.MAX else "the smaller"
    return f"at most {' or '.join(parts)}: {chosen} change (selectPolicy {rule.select})"


def changes_in_period(events: Sequence[ScaleEvent], now: datetime, period: timedelta) -> tuple[int, int]:
    """Replicas added and removed by the scale events of the last ``period``."""
    cutoff = now - period
    added = sum(e.change for e in events if e.time > cutoff and e.change > 0)
    removed = sum(-e.change for e in events if e.time > cutoff and e.change < 0)
    return added, removed


def recent_events(events: Sequence[ScaleEvent], now: datetime, keep: timedelta) -> tuple[ScaleEvent, ...]:
    """The events inside the last ``keep``, oldest first; events "from the future" are dropped."""
    return tuple(sorted((e for e in events if now - keep < e.time <= now), key=lambda e: e.time))
