"""`rightsizer report` as data: per workload and per pool, GPUs allocated vs busy, cost per hour,
idle cost, and — against a saved baseline report — cost before vs after and the savings.

Pure: takes the cluster snapshot, the GPUWorkload objects (their status carries utilisation and cost)
and the pool assignment; returns rows. The CLI reads the cluster and prints them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.core.pools import PoolAssignment, idle_gpu_cost, node_cost
from rightsizer.core.snapshot import Snapshot
from rightsizer.core.wording import stored_number

ZERO = Decimal(0)


@dataclass(frozen=True)
class WorkloadRow:
    namespace: str
    name: str
    type: str
    mode: str
    replicas: int
    gpus_allocated: Decimal
    gpus_busy: Decimal | None
    utilization: float | None
    cost_per_hour: Decimal | None  # None: stored, but not a number (unknown, never 0)
    idle_cost_per_hour: Decimal | None
    cost_to_date: Decimal | None
    currency: str
    last_decision: str


@dataclass(frozen=True)
class PoolRow:
    pool: str
    nodes: int
    gpus_allocatable: Decimal
    gpus_requested: Decimal
    gpus_busy: Decimal
    cost_per_hour: Decimal
    idle_cost_per_hour: Decimal


@dataclass(frozen=True)
class Report:
    workloads: tuple[WorkloadRow, ...]
    pools: tuple[PoolRow, ...]

    @property
    def total_cost_per_hour(self) -> Decimal:
        return sum((p.cost_per_hour for p in self.pools), ZERO)

    @property
    def total_idle_cost_per_hour(self) -> Decimal:
        return sum((p.idle_cost_per_hour for p in self.pools), ZERO)

    @property
    def workload_cost_per_hour(self) -> Decimal | None:
        """What the workloads cost per hour; unknown when one workload's cost is."""
        costs = [w.cost_per_hour for w in self.workloads]
        return None if None in costs else sum((c for c in costs if c is not None), ZERO)

    def to_json(self) -> dict[str, Any]:
        def plain(row: Any) -> dict[str, Any]:
            return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in asdict(row).items()}

        return {
            "workloads": [plain(w) for w in self.workloads],
            "pools": [plain(p) for p in self.pools],
            "totals": {
                "costPerHour": float(self.total_cost_per_hour),
                "workloadCostPerHour": _float(self.workload_cost_per_hour),
                "idleCostPerHour": float(self.total_idle_cost_per_hour),
                "nodes": sum(p.nodes for p in self.pools),
                "gpusAllocatable": float(sum((p.gpus_allocatable for p in self.pools), ZERO)),
            },
        }


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _stored(cost: Mapping[str, Any], key: str) -> Decimal | None:
    """A cost number of a workload's status: 0 before the operator has written one, None (unknown)
    when what is stored is not a number."""
    value = cost.get(key)
    return ZERO if value is None else stored_number(value)


def build_report(
    snapshot: Snapshot, workloads: Sequence[Mapping[str, Any]], assignment: PoolAssignment
) -> Report:
    # GPUs of each workload: the pods the operator annotated as belonging to it.
    allocated: dict[tuple[str, str], Decimal] = {}
    pod_workload: dict[str, tuple[str, str]] = {}
    for pod in snapshot.pods:
        owner = pod.annotations.get(WORKLOAD_ANNOTATION)
        if owner and not pod.terminal and pod.node_name:
            key = (pod.namespace, owner)
            allocated[key] = allocated.get(key, ZERO) + pod.gpus()
            pod_workload[pod.key] = key

    rows: list[WorkloadRow] = []
    busy_by_workload: dict[tuple[str, str], Decimal] = {}
    for obj in workloads:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        cost = status.get("cost") or {}
        util = (status.get("utilization") or {}).get("aggregate")
        gpus = allocated.get(key, ZERO)
        efficiency = stored_number(cost.get("gpuEfficiency"))
        busy = (gpus * efficiency).quantize(Decimal("0.01")) if efficiency is not None else None
        if busy is not None:
            busy_by_workload[key] = busy
        rows.append(
            WorkloadRow(
                namespace=key[0],
                name=key[1],
                type=str(spec.get("workloadType", "")),
                mode=str(spec.get("mode", "")),
                replicas=int((status.get("replicas") or {}).get("current") or 0),
                gpus_allocated=gpus,
                gpus_busy=busy,
                utilization=float(util) if util is not None else None,
                cost_per_hour=_stored(cost, "perHour"),
                idle_cost_per_hour=_stored(cost, "idlePerHour"),
                cost_to_date=_stored(cost, "toDate"),
                currency=str(cost.get("currency", "")),
                last_decision=str((status.get("lastDecision") or {}).get("action", "")),
            )
        )

    # Busy GPUs per node: each workload's busy share spread over its pods' GPUs. A pod whose activity
    # is unknown (no GPUWorkload, or one that has not measured it) counts as busy, as in the pool's
    # status: waste is reported only where it was seen.
    node_busy: dict[str, Decimal] = {}
    for pod in snapshot.pods:
        if not pod.node_name or pod.terminal or pod.gpus() <= 0:
            continue
        wl = pod_workload.get(pod.key)
        known = busy_by_workload.get(wl) if wl is not None and allocated.get(wl) else None
        share = known * pod.gpus() / allocated[wl] if known is not None and wl is not None else pod.gpus()
        node_busy[pod.node_name] = node_busy.get(pod.node_name, ZERO) + share

    pools: list[PoolRow] = []
    for name in sorted(assignment.pools):
        policy = assignment.pools[name]
        nodes = [n for n in snapshot.nodes if assignment.node_pool.get(n.name) == name]
        names = {n.name for n in nodes}
        gpus = sum((n.gpus() for n in nodes), ZERO)
        requested = sum((p.gpus() for p in snapshot.pods if p.node_name in names and not p.terminal), ZERO)
        cost = sum((node_cost(n, policy) for n in nodes), ZERO)
        busy = min(sum((node_busy.get(n, ZERO) for n in names), ZERO), gpus)
        pools.append(
            PoolRow(
                pool=name,
                nodes=len(nodes),
                gpus_allocatable=gpus,
                gpus_requested=requested,
                gpus_busy=busy.quantize(Decimal("0.01")),
                cost_per_hour=cost,
                idle_cost_per_hour=idle_gpu_cost(nodes, policy, node_busy).quantize(Decimal("0.0001")),
            )
        )
    rows.sort(key=lambda r: (r.namespace, r.name))
    return Report(tuple(rows), tuple(pools))


def savings(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float | None]:
    """Compare two `to_json()` reports (e.g. the demo's start and end); a workload total either report
    does not know stays None."""
    b, a = before.get("totals", {}), after.get("totals", {})
    cost_before, cost_after = float(b.get("costPerHour", 0)), float(a.get("costPerHour", 0))
    return {
        "costPerHourBefore": cost_before,
        "costPerHourAfter": cost_after,
        "savedPerHour": round(cost_before - cost_after, 4),
        "savedPercent": round(100 * (cost_before - cost_after) / cost_before, 1) if cost_before else 0.0,
        "workloadCostPerHourBefore": _total(b, "workloadCostPerHour"),
        "workloadCostPerHourAfter": _total(a, "workloadCostPerHour"),
        "idleCostPerHourBefore": float(b.get("idleCostPerHour", 0)),
        "idleCostPerHourAfter": float(a.get("idleCostPerHour", 0)),
        "nodesBefore": int(b.get("nodes", 0)),
        "nodesAfter": int(a.get("nodes", 0)),
    }


def _total(totals: Mapping[str, Any], key: str) -> float | None:
    value = totals.get(key, 0)
    return float(value) if value is not None else None
