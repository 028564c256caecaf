"""The cost model: hardware + energy x PUE + overhead, exact Decimals, and a guarded accumulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.cost import (
    PricingModel,
    WorkloadUsage,
    accrue_cost,
    overhead_per_gpu_hour,
    workload_cost,
)
from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.wording import TIMES as X
from rightsizer.core.wording import format_money

pytestmark = pytest.mark.unit

D = Decimal
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
GAP = timedelta(minutes=10)

# An A100 pool priced per node: $32.77 per node-hour for 8 GPUs is $4.09625 per GPU-hour.
A100_POOL = PricingModel(
    currency="USD",
    node_hour=D("32.77"),
    gpus_per_node=8,
    cpu_core_hour=D("0.04"),
    storage_gib_hour=D("0.0001"),
    energy_kwh=D("0.15"),
    rated_watts_per_gpu=D(400),
    pue=D("1.2"),
    overhead_per_gpu_hour=D("0.10"),
)


def test_cost_matches_hand_computed_case() -> None:
    usage = WorkloadUsage(
        requested_gpus=D(2), used_gpu_equivalents=D("0.5"), cpu_cores=D(16), storage_gib=D(100)
    )
    cost = workload_cost(A100_POOL, usage)
    assert cost.gpu == D("8.1925")  # max(2, 0.5) x 4.09625
    assert cost.cpu == D("0.64")  # 16 x 0.04
    assert cost.storage == D("0.01")  # 100 x 0.0001
    assert cost.energy_kwh_per_hour == D("0.96")  # 2 x 400 W x 1.2 / 1000
    assert cost.energy == D("0.144")  # 0.96 x 0.15
    assert cost.overhead == D("0.2")  # 2 x 0.10
    assert cost.per_hour == D("9.1865")
    assert cost.idle_per_hour == D("6.144375")  # 1.5 idle GPUs x 4.09625
    assert cost.gpu_efficiency == D("0.25")
    assert cost.power_source == "rated"
    assert cost.reason == (
        f"GPU max(requested 2, used 0.5) {X} 4.0963 = 8.1925; CPU 16 cores {X} 0.0400 = 0.6400; "
        f"storage 100 GiB {X} 0.0001 = 0.0100; "
        f"energy 800 W rated {X} PUE 1.2 = 0.96 kWh {X} 0.1500 = 0.1440; "
        f"overhead 2 GPUs {X} 0.1000 = 0.2000; total 9.1865 USD/h"
    )


def test_measured_power_replaces_rated_power() -> None:
    usage = WorkloadUsage(requested_gpus=D(2), used_gpu_equivalents=D(1), measured_watts=D(260))
    cost = workload_cost(A100_POOL, usage)
    assert cost.power_source == "measured"
    assert cost.energy == D("0.0468")  # 260 W x 1.2 / 1000 x 0.15


def test_gpu_cost_is_on_usage_when_usage_exceeds_requests() -> None:
    # Shared or fractional GPUs: 1.5 GPUs' worth of work on 1 requested GPU pays for 1.5.
    cost = workload_cost(PricingModel(gpu_hour=D(2)), WorkloadUsage(D(1), D("1.5")))
    assert (cost.billable_gpus, cost.gpu, cost.idle_per_hour) == (D("1.5"), D(3), D(0))


def test_unknown_usage_bills_requests_and_leaves_idle_unknown() -> None:
    cost = workload_cost(PricingModel(gpu_hour=D(2)), WorkloadUsage(D(4), None))
    assert (cost.gpu, cost.idle_per_hour, cost.gpu_efficiency) == (D(8), None, None)
    assert "requested 4 (usage unknown)" in cost.reason


def test_zero_terms_are_left_out_of_the_reason() -> None:
    cost = workload_cost(PricingModel(gpu_hour=D(3)), WorkloadUsage(D(1), D(1)))
    assert cost.reason == f"GPU max(requested 1, used 1) {X} 3.0000 = 3.0000; total 3.0000 USD/h"


def test_pool_overhead_is_shared_per_gpu() -> None:
    assert overhead_per_gpu_hour(D(4), 32) == D("0.125")
    assert overhead_per_gpu_hour(D(4), 0) == D(0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "pricing"),
        ({"gpu_hour": D(1), "node_hour": D(8), "gpus_per_node": 8}, "pricing"),
        ({"node_hour": D(8)}, "gpusPerNode"),
        ({"gpu_hour": D(-1)}, "pricePerGpuHour"),
        ({"gpu_hour": D(1), "pue": D("0.9")}, "pue"),
        ({"gpu_hour": D(1), "energy_kwh": D("NaN")}, "energyPerKWh"),
    ],
)
def test_bad_pricing_is_refused_with_the_field_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPolicy, match=field):
        PricingModel(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [(D("1.23455"), "1.2346"), (D("2.50004"), "2.5000"), (D("0.91865"), "0.9187"), (D(3), "3.0000")],
)
def test_money_is_rounded_half_up_for_display(value: Decimal, text: str) -> None:
    assert format_money(value) == text


# --- accrual ------------------------------------------------------------------------------------


def test_first_accrual_only_starts_the_clock() -> None:
    accrual = accrue_cost(to_date=D(0), per_hour=D(5), last_accrued_at=None, now=T0, max_gap=GAP)
    assert (accrual.to_date, accrual.accrued_at, accrual.added) == (D(0), T0, D(0))


def test_accrual_adds_rate_times_elapsed_time() -> None:
    accrual = accrue_cost(
        to_date=D(10), per_hour=D("9.1865"), last_accrued_at=T0, now=T0 + timedelta(minutes=6), max_gap=GAP
    )
    assert accrual.added == D("0.91865")
    assert accrual.to_date == D("10.91865")
    assert accrual.reason == "6m at 9.1865/h = 0.9187"


def test_clock_going_backwards_accrues_nothing_and_keeps_the_later_time() -> None:
    accrual = accrue_cost(
        to_date=D(7), per_hour=D(100), last_accrued_at=T0, now=T0 - timedelta(minutes=5), max_gap=GAP
    )
    assert (accrual.to_date, accrual.accrued_at, accrual.added) == (D(7), T0, D(0))


def test_long_gap_is_capped() -> None:
    accrual = accrue_cost(
        to_date=D(0), per_hour=D(6), last_accrued_at=T0, now=T0 + timedelta(hours=3), max_gap=GAP
    )
    assert accrual.added == D(1)  # 10 minutes at $6/h
    assert accrual.accrued_at == T0 + timedelta(hours=3)
    assert "gap of 3h capped at 10m" in accrual.reason


def test_many_small_accruals_do_not_drift() -> None:
    to_date, last = D(0), T0
    for step in range(1, 121):
        now = T0 + timedelta(seconds=30 * step)
        accrual = accrue_cost(to_date=to_date, per_hour=D(1), last_accrued_at=last, now=now, max_gap=GAP)
        to_date, last = accrual.to_date, accrual.accrued_at
    assert abs(to_date - D(1)) < D("1e-20")


def test_negative_rate_is_a_bug_not_a_refund() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        accrue_cost(to_date=D(0), per_hour=D(-1), last_accrued_at=T0, now=T0, max_gap=GAP)


@given(
    st.lists(
        st.tuples(
            st.integers(-600, 7200).map(lambda s: timedelta(seconds=s)),
            st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
        ),
        max_size=30,
    )
)
def test_cost_monotone_in_time_and_never_negative(steps: list[tuple[timedelta, Decimal]]) -> None:
    to_date, last, now = D(0), None, T0
    for delta, rate in steps:
        now += delta
        accrual = accrue_cost(to_date=to_date, per_hour=rate, last_accrued_at=last, now=now, max_gap=GAP)
        assert accrual.to_date >= to_date >= 0
        assert accrual.added <= rate * D(GAP.total_seconds()) / D(3600)
        assert last is None or accrual.accrued_at >= last
        to_date, last = accrual.to_date, accrual.accrued_at


@given(
    st.decimals(min_value=0, max_value=64, places=2),
    st.one_of(st.none(), st.decimals(min_value=0, max_value=64, places=3)),
    st.decimals(min_value=0, max_value=128, places=1),
)
def test_workload_cost_is_never_negative_and_sums_its_parts(
    requested: Decimal, used: Decimal | None, cpus: Decimal
) -> None:
    cost = workload_cost(A100_POOL, WorkloadUsage(requested, used, cpu_cores=cpus))
    parts = (cost.gpu, cost.cpu, cost.storage, cost.energy, cost.overhead)
    assert all(part >= 0 for part in parts)
    assert cost.per_hour == sum(parts)
    assert cost.gpu >= requested * A100_POOL.gpu_unit_price
