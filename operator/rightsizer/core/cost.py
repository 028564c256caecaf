"""What a GPU workload costs, per hour and to date, and what idle GPUs cost a pool.

The seed model: total = hardware + energy (+ fixed overheads).

- GPU: ``max(requested GPUs, used GPU-equivalents) x price per GPU-hour`` (or node price / GPUs
  per node). Like OpenCost, a workload pays for what it reserved even when it leaves it idle,
  and for more when it uses more than it asked for (shared or fractional GPUs).
- CPU: requested cores x price per core-hour; storage: requested GiB x price per GiB-hour.
  When the node price already covers CPU, set the CPU price to 0.
- Energy: power x PUE / 1000 = kWh per hour, x price per kWh. Power is measured
  (DCGM_FI_DEV_POWER_USAGE) when every GPU reports it, else the rated watts of the requested GPUs.
- Overhead: a pool's fixed hourly overhead, shared per billable GPU.

Money is Decimal throughout; rounding happens only for display (``wording.format_money``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from rightsizer.api.durations import format_duration
from rightsizer.core.errors import InvalidPolicy
from rightsizer.core.wording import TIMES, format_money, format_number

ZERO = Decimal(0)
_HOUR_SECONDS = Decimal(3600)


@dataclass(frozen=True)
class PricingModel:
    """Unit prices of one pool (or a workload's pricing override)."""

    currency: str = "USD"
    gpu_hour: Decimal | None = None
    node_hour: Decimal | None = None
    gpus_per_node: int | None = None
    cpu_core_hour: Decimal = ZERO
    storage_gib_hour: Decimal = ZERO
    energy_kwh: Decimal = ZERO
    rated_watts_per_gpu: Decimal = ZERO
    pue: Decimal = Decimal(1)
    overhead_per_gpu_hour: Decimal = ZERO

    def __post_init__(self) -> None:
        if (self.gpu_hour is None) == (self.node_hour is None):
            raise InvalidPolicy(
                "pricing",
                "exactly one of pricePerGpuHour and pricePerNodeHour must be set",
                "set one of them",
            )
        if self.node_hour is not None and not self.gpus_per_node:
            raise InvalidPolicy(
                "pricing.gpusPerNode",
                "a node price needs the number of GPUs per node to split it",
                "set gpusPerNode (e.g. 8)",
            )
        for name, amount in (
            ("pricePerGpuHour", self.gpu_hour),
            ("pricePerNodeHour", self.node_hour),
            ("cpuCoreHour", self.cpu_core_hour),
            ("storageGiBHour", self.storage_gib_hour),
            ("energyPerKWh", self.energy_kwh),
            ("ratedWattsPerGpu", self.rated_watts_per_gpu),
            ("overheadPerGpuHour", self.overhead_per_gpu_hour),
        ):
            if amount is not None and (not amount.is_finite() or amount < 0):
                raise InvalidPolicy(f"pricing.{name}", f"{amount} is negative or not finite", "use 0 or more")
        if not self.pue.is_finite() or self.pue < 1:
            raise InvalidPolicy(
                "pricing.pue", f"{self.pue} is below 1", "PUE is total facility power / IT power, e.g. 1.2"
            )

    @property
    def gpu_unit_price(self) -> Decimal:
        """Price of one GPU for one hour."""
        if self.gpu_hour is not None:
            return self.gpu_hour
        assert self.node_hour is not None and self.gpus_per_node  # guaranteed by __post_init__
        return self.node_hour / self.gpus_per_node


def overhead_per_gpu_hour(pool_overhead_per_hour: Decimal, pool_gpus: int) -> Decimal:
    """Share a pool's fixed hourly overhead (operations, bandwidth) evenly over its GPUs."""
    if pool_gpus <= 0:
        return ZERO
    return pool_overhead_per_hour / pool_gpus


def kwh_per_hour(watts: Decimal, pue: Decimal) -> Decimal:
    """Energy drawn per hour at the wall: power times the data centre's PUE."""
    return watts * pue / 1000


@dataclass(frozen=True)
class RunningCosts:
    """What a pool's node costs per hour beyond its price: its CPU cores and the energy its GPUs draw
    at their rated power, at the prices :func:`workload_cost` charges a workload for the same."""

    cpu_core_hour: Decimal = ZERO
    energy_kwh: Decimal = ZERO
    rated_watts_per_gpu: Decimal = ZERO
    pue: Decimal = Decimal(1)

    def per_hour(self, cpu_cores: Decimal, gpus: Decimal) -> Decimal:
        energy = kwh_per_hour(gpus * self.rated_watts_per_gpu, self.pue) * self.energy_kwh
        return cpu_cores * self.cpu_core_hour + energy


@dataclass(frozen=True)
class WorkloadUsage:
    """What a workload reserved and what it did, summed over its replicas."""

    requested_gpus: Decimal
    used_gpu_equivalents: Decimal | None
    """Sum of utilisation / 100 over its GPUs; None when the metrics could not be used."""
    cpu_cores: Decimal = ZERO
    storage_gib: Decimal = ZERO
    measured_watts: Decimal | None = None
    """Measured power of all its GPUs; None unless every GPU reported power."""

    def __post_init__(self) -> None:
        for name, amount in (
            ("requested GPUs", self.requested_gpus),
            ("used GPU-equivalents", self.used_gpu_equivalents),
            ("CPU cores", self.cpu_cores),
            ("storage GiB", self.storage_gib),
            ("measured watts", self.measured_watts),
        ):
            if amount is not None and (not amount.is_finite() or amount < 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {amount}")


@dataclass(frozen=True)
class CostBreakdown:
    currency: str
    gpu: Decimal
    cpu: Decimal
    storage: Decimal
    energy: Decimal
    overhead: Decimal
    per_hour: Decimal
    billable_gpus: Decimal
    idle_per_hour: Decimal | None
    """Cost of reserved but unused GPU time; None when usage is unknown."""
    gpu_efficiency: Decimal | None
    """Used / requested GPUs; None when either is unknown or nothing is requested."""
    energy_kwh_per_hour: Decimal
    power_source: str
    """``measured`` or ``rated``."""
    reason: str


def workload_cost(pricing: PricingModel, usage: WorkloadUsage) -> CostBreakdown:
    """Hourly cost of a workload under ``pricing``, with every term spelled out in ``reason``."""
    unit = pricing.gpu_unit_price
    used = usage.used_gpu_equivalents
    billable = max(usage.requested_gpus, used) if used is not None else usage.requested_gpus
    gpu = billable * unit
    cpu = usage.cpu_cores * pricing.cpu_core_hour
    storage = usage.storage_gib * pricing.storage_gib_hour
    if usage.measured_watts is not None:
        watts, source = usage.measured_watts, "measured"
    else:
        watts, source = pricing.rated_watts_per_gpu * usage.requested_gpus, "rated"
    energy_per_hour = kwh_per_hour(watts, pricing.pue)
    energy = energy_per_hour * pricing.energy_kwh
    overhead = billable * pricing.overhead_per_gpu_hour
    per_hour = gpu + cpu + storage + energy + overhead
    idle = max(usage.requested_gpus - used, ZERO) * unit if used is not None else None
    efficiency = used / usage.requested_gpus if used is not None and usage.requested_gpus > 0 else None

    n = format_number
    basis = (
        f"max(requested {n(usage.requested_gpus, 2)}, used {n(used, 2)})"
        if used is not None
        else f"requested {n(usage.requested_gpus, 2)} (usage unknown)"
    )
    terms = [f"GPU {basis} {TIMES} {_m(unit)} = {_m(gpu)}"]
    if cpu:
        terms.append(f"CPU {n(usage.cpu_cores, 3)} cores {TIMES} {_m(pricing.cpu_core_hour)} = {_m(cpu)}")
    if storage:
        terms.append(
            f"storage {n(usage.storage_gib, 2)} GiB {TIMES} {_m(pricing.storage_gib_hour)} = {_m(storage)}"
        )
    if energy:
        terms.append(
            f"energy {n(watts, 1)} W {source} {TIMES} PUE {n(pricing.pue, 2)} = {n(energy_per_hour, 4)} kWh "
            f"{TIMES} {_m(pricing.energy_kwh)} = {_m(energy)}"
        )
    if overhead:
        terms.append(
            f"overhead {n(billable, 2)} GPUs {TIMES} {_m(pricing.overhead_per_gpu_hour)} = {_m(overhead)}"
        )
    reason = f"{'; '.join(terms)}; total {_m(per_hour)} {pricing.currency}/h"
    return CostBreakdown(
        currency=pricing.currency,
        gpu=gpu,
        cpu=cpu,
        storage=storage,
        energy=energy,
        overhead=overhead,
        per_hour=per_hour,
        billable_gpus=billable,
        idle_per_hour=idle,
        gpu_efficiency=efficiency,
        energy_kwh_per_hour=energy_per_hour,
        power_source=source,
        reason=reason,
    )


@dataclass(frozen=True)
class Accrual:
    to_date: Decimal
    accrued_at: datetime
    """Keep and pass back as ``last_accrued_at`` next time."""
    added: Decimal
    reason: str


def accrue_cost(
    *,
    to_date: Decimal,
    per_hour: Decimal,
    last_accrued_at: datetime | None,
    now: datetime,
    max_gap: timedelta,
) -> Accrual:
    """Add the cost of the time since the last accrual to the running total.

    ``per_hour`` is the rate that applied over that time (the previous per-hour cost). Guards:
    the first call only starts the clock; a clock that went backwards adds nothing and keeps the
    later timestamp (so the same time is never billed twice); a gap longer than ``max_gap``
    (operator down, workload unobserved) is billed as ``max_gap`` only, since nothing is known
    about what ran in between.
    """
    if not per_hour.is_finite() or per_hour < 0:
        raise ValueError(f"per-hour cost must be a finite non-negative Decimal, got {per_hour}")
    if last_accrued_at is None:
        return Accrual(to_date, now, ZERO, "cost accrual starts now")
    if now <= last_accrued_at:
        return Accrual(
            to_date,
            last_accrued_at,
            ZERO,
            "clock is not after the last accrual; nothing added until it is",
        )
    elapsed = now - last_accrued_at
    note = ""
    if elapsed > max_gap:
        note = (
            f"; gap of {format_duration(elapsed)} capped at {format_duration(max_gap)} "
            "(unobserved time is not billed)"
        )
        elapsed = max_gap
    added = per_hour * _seconds(elapsed) / _HOUR_SECONDS
    return Accrual(
        to_date + added,
        now,
        added,
        f"{format_duration(elapsed)} at {_m(per_hour)}/h = {_m(added)}{note}",
    )


def _seconds(value: timedelta) -> Decimal:
    # timedelta's parts are integers, so this is exact (total_seconds() is a float).
    return Decimal(value.days * 86400 + value.seconds) + Decimal(value.microseconds) / Decimal(1_000_000)


def _m(value: Decimal) -> str:
    return format_money(value)
