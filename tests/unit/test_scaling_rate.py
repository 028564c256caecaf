"""HPA's rate policies, case by case, written from the HPA documentation's rules with our numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.core.scaling_rate import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    LimitKind,
    RateLimit,
    ScaleEvent,
    Select,
    StepRule,
    limit_rate,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def pods(value: int, period: int = 15) -> RateLimit:
    return RateLimit(LimitKind.PODS, value, period)


def percent(value: int, period: int = 15) -> RateLimit:
    return RateLimit(LimitKind.PERCENT, value, period)


def ago(seconds: int, change: int) -> ScaleEvent:
    return ScaleEvent(NOW - timedelta(seconds=seconds), change)


# The documentation's scale-down example: 4 pods or 10% per minute, whichever removes more.
DOCS_DOWN = StepRule(limits=(pods(4, 60), percent(10, 60)))


@pytest.mark.parametrize(
    ("rule", "current", "desired", "events", "allowed"),
    [
        pytest.param(DEFAULT_SCALE_UP, 10, 50, (), 20, id="default-up-100-percent-beats-4-pods"),
        pytest.param(DEFAULT_SCALE_UP, 2, 50, (), 6, id="default-up-4-pods-beat-100-percent"),
        pytest.param(DEFAULT_SCALE_UP, 10, 17, (), 17, id="default-up-within-allowance"),
        pytest.param(
            StepRule(limits=DEFAULT_SCALE_UP.limits, select=Select.MIN), 10, 50, (), 14, id="min-up-smaller"
        ),
        pytest.param(DEFAULT_SCALE_DOWN, 40, 1, (), 1, id="default-down-100-percent"),
        pytest.param(DOCS_DOWN, 80, 10, (), 72, id="docs-down-80-percent-wins"),
        pytest.param(DOCS_DOWN, 72, 10, (ago(61, -8),), 64, id="docs-down-72-remainder-rounded-down"),
        pytest.param(DOCS_DOWN, 40, 10, (), 36, id="docs-down-40-both-equal"),
        pytest.param(DOCS_DOWN, 30, 10, (), 26, id="docs-down-30-pods-win"),
        pytest.param(DOCS_DOWN, 80, 10, (ago(30, -4),), 75, id="docs-down-counts-from-the-period-start"),
        pytest.param(
            StepRule(limits=DOCS_DOWN.limits, select=Select.MIN), 80, 10, (), 76, id="min-down-fewer-removed"
        ),
        pytest.param(StepRule(limits=(percent(10),)), 1, 5, (), 2, id="percent-up-rounds-up-so-one-grows"),
        pytest.param(StepRule(limits=(percent(50),)), 5, 1, (), 2, id="percent-down-rounds-the-rest-down"),
        pytest.param(
            StepRule(limits=(pods(4, 60), percent(100, 15))),
            8,
            30,
            (ago(30, 4),),
            16,
            id="each-policy-counts-its-own-period",
        ),
        pytest.param(
            StepRule(limits=(pods(4, 60), percent(100, 15)), select=Select.MIN),
            8,
            30,
            (ago(30, 4),),
            8,
            id="min-with-one-period-used-up-holds",
        ),
        pytest.param(StepRule(limits=(pods(2, 60),)), 10, 20, (ago(10, 5),), 10, id="never-reverses"),
        pytest.param(
            StepRule(limits=(pods(4, 60),)), 6, 12, (ago(50, 2), ago(20, -3)), 11, id="mixed-events"
        ),
        pytest.param(StepRule(), 3, 300, (), 300, id="no-limits"),
    ],
)
def test_rate_policies(
    rule: StepRule, current: int, desired: int, events: tuple[ScaleEvent, ...], allowed: int
) -> None:
    assert limit_rate(rule, current, desired, events, NOW)[0] == allowed


@pytest.mark.parametrize(("current", "desired"), [(4, 9), (4, 1), (4, 0)])
def test_disabled_direction_never_changes(current: int, desired: int) -> None:
    rule = StepRule(limits=DEFAULT_SCALE_UP.limits, select=Select.DISABLED)
    allowed, reason = limit_rate(rule, current, desired, (), NOW)
    assert allowed == current
    assert "disabled (selectPolicy Disabled)" in reason


def test_the_reason_names_each_policy_and_what_its_period_already_used() -> None:
    _, reason = limit_rate(DOCS_DOWN, 80, 10, (ago(30, -4),), NOW)
    assert reason == (
        "scale-down limited to 75 (at most 4 pods per 1m, 4 already removed in it or 10% per 1m, "
        "4 already removed in it: the larger change (selectPolicy Max))"
    )


def test_a_change_within_the_limits_has_no_reason() -> None:
    assert limit_rate(DEFAULT_SCALE_UP, 4, 8, (), NOW) == (8, "")
