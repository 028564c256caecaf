"""Cost annotations are rewritten when what they show changed, and the running total only once it has
fallen behind by minutes of spending: a steady fleet costs no writes per pass."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from rightsizer.core.cost_annotations import (
    COST_TO_DATE_LAG,
    allowed_lag,
    annotations_are_stale,
    to_date_is_stale,
)
from rightsizer.devcluster.memory_cluster import MemoryCluster

pytestmark = pytest.mark.unit

TEN_MIN = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("shown", "to_date", "per_hour", "stale", "why"),
    [
        (None, "1.00", "6", True, "never written"),
        ("garbage", "1.00", "6", True, "unreadable"),
        ("NaN", "1.00", "6", True, "not a number"),
        ("1.00", "1.00", "6", False, "up to date"),
        ("0.50", "1.00", "6", False, "behind by 5 minutes of $6/h: within 10 minutes"),
        ("0.00", "1.00", "6", False, "behind by exactly 10 minutes of spending"),
        ("0.00", "1.01", "6", True, "behind by more than 10 minutes of spending"),
        ("2.00", "1.00", "6", True, "ahead: the accrual started over"),
        ("1.00", "1.01", "0", True, "a free workload's total is rewritten when it moves at all"),
    ],
)
def test_the_shown_total_is_rewritten_only_when_minutes_behind(
    shown: str | None, to_date: str, per_hour: str, stale: bool, why: str
) -> None:
    assert to_date_is_stale(shown, Decimal(to_date), Decimal(per_hour), TEN_MIN) is stale, why


WANTED = {"cost-per-hour": "6.0000", "cost-to-date": "1.0000", "gpu-efficiency": "0.500", "currency": "USD"}


@pytest.mark.parametrize(
    ("change", "stale"),
    [
        ({}, False),
        ({"cost-to-date": "0.9000"}, False),  # one minute of $6/h behind
        ({"cost-per-hour": "6.0001"}, True),
        ({"gpu-efficiency": "0.499"}, True),
        ({"currency": "EUR"}, True),
        ({"cost-to-date": "0.0000"}, False),  # exactly ten minutes behind
    ],
)
def test_any_other_shown_value_that_differs_means_rewrite(change: dict[str, str], stale: bool) -> None:
    shown = {**WANTED, **change}
    result = annotations_are_stale(
        shown, WANTED, to_date_key="cost-to-date", per_hour=Decimal(6), lag=TEN_MIN
    )
    assert result is stale


def test_a_missing_annotation_means_rewrite() -> None:
    shown = {k: v for k, v in WANTED.items() if k != "currency"}
    assert annotations_are_stale(shown, WANTED, to_date_key="cost-to-date", per_hour=Decimal(6), lag=TEN_MIN)


def test_each_workload_has_its_own_fixed_lag_between_half_and_all_of_it() -> None:
    lags = [allowed_lag(f"team-{i}/svc-{i}") for i in range(200)]
    assert all(COST_TO_DATE_LAG / 2 <= lag <= COST_TO_DATE_LAG for lag in lags)
    assert allowed_lag("a/b") == allowed_lag("a/b")
    # Spread out, so workloads created together do not all refresh in the same pass.
    assert max(lags) - min(lags) > COST_TO_DATE_LAG / 3


def annotation_writes(c: MemoryCluster) -> list[tuple[str, str, str, object]]:
    return [w for w in c.targets.writes if w[0] in ("annotate", "annotate-pod")]


def test_a_steady_workload_writes_no_annotations_after_its_first_pass() -> None:
    c = MemoryCluster(interval=30)
    c.deployment("ml", "chat", 3, util=60)
    c.workload("ml", "chat")
    c.reconcile("ml", "chat")
    first = annotation_writes(c)
    assert [w[0] for w in first] == ["annotate", "annotate-pod", "annotate-pod", "annotate-pod"]
    for _ in range(6):  # three minutes of passes at a steady 60%
        c.now += timedelta(seconds=30)
        for pod in ("chat-0", "chat-1", "chat-2"):
            c.metrics.record("ml", pod, 60.0, at=c.now)
        c.reconcile("ml", "chat")
    assert annotation_writes(c) == first


def test_the_total_is_refreshed_once_it_lags_by_the_workload_s_lag() -> None:
    c = MemoryCluster(interval=30)
    c.deployment("ml", "chat", 1, util=60)
    c.workload("ml", "chat")
    c.reconcile("ml", "chat")
    writes = len(annotation_writes(c))
    for _ in range(int(COST_TO_DATE_LAG.total_seconds() / 30) + 2):  # a little over ten minutes
        c.now += timedelta(seconds=30)
        c.metrics.record("ml", "chat-0", 60.0, at=c.now)
        c.reconcile("ml", "chat")
    later = annotation_writes(c)[writes:]
    assert later, "the shown cost-to-date was never refreshed"
    shown = c.targets.scales[("ml", "Deployment", "chat")].annotations["rightsizer.io/cost-to-date"]
    assert Decimal(shown) > 0
