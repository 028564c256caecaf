"""What a pool pass reports beside its conditions: the GPUNodePool status's counts and costs (with the
pool gauges), the conditions kept while nothing can be read, and why missing GPU samples or
unreadable annotations hold the pool.

Apart from the pass so that reading, planning and acting stay in one place and what users see of
a pool is computed in another, from what the pass observed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from rightsizer.adapters.cluster_snapshot import ClusterState
from rightsizer.api.v1alpha1.gpunodepool import GPUNodePoolStatus
from rightsizer.core.conditions import replace_conditions
from rightsizer.core.gpu_share import gpu_share
from rightsizer.core.metrics_view import IDLE_GPU_PERCENT
from rightsizer.core.pool_status import INPUTS_AVAILABLE
from rightsizer.core.pools import PoolPolicy, idle_gpu_cost, node_cost
from rightsizer.core.protections import DO_NOT_DISRUPT_UNTIL, protected_until
from rightsizer.core.snapshot import Node, Pod
from rightsizer.runtime.events import Event
from rightsizer.runtime.telemetry import Telemetry


def pool_status(
    state: ClusterState,
    pool: PoolPolicy,
    members: Sequence[Node],
    activity: Mapping[str, Decimal],
    *,
    generation: int | None,
    last_scale_down: datetime | None,
    telemetry: Telemetry,
) -> dict[str, Any]:
    """The status fields other than conditions (camelCase, JSON values); sets the pool's gauges."""
    pods = _pods_on(state, members)
    # Physical GPUs: a MIG slice or a time-sliced replica counts as its share of one.
    labels = {n.name: n.labels for n in members}
    share = {p.key: gpu_share(p.requests, labels.get(p.node_name or "", {})) for p in pods}
    allocatable = sum((n.physical_gpus() for n in members), Decimal(0))
    requested = sum(share.values(), Decimal(0))
    known = [p for p in pods if share[p.key] > 0 and p.key in activity]
    active: Decimal | None = None
    if known:
        active = sum((share[p.key] for p in known if activity[p.key] > IDLE_GPU_PERCENT), Decimal(0))
    cost = sum((node_cost(n, pool) for n in members), Decimal(0))
    # A pod without a reading is unknown, never idle: its GPUs count as busy.
    busy: dict[str, Decimal] = {}
    for p in pods:
        if p.node_name and (p.key not in activity or activity[p.key] > IDLE_GPU_PERCENT):
            busy[p.node_name] = busy.get(p.node_name, Decimal(0)) + share[p.key]
    idle_cost = idle_gpu_cost(members, pool, busy)
    telemetry.pool_nodes.set(len(members), pool.name)
    telemetry.pool_idle_cost_per_hour.set(float(idle_cost), pool.name, pool.currency)
    status = GPUNodePoolStatus(
        observed_generation=generation,
        nodes=len(members),
        gpus_allocatable=int(allocatable),
        gpus_requested=int(requested),
        gpus_active=int(active) if active is not None else None,
        currency=pool.currency,
        cost_per_hour=cost.quantize(Decimal("0.0001")),
        idle_cost_per_hour=idle_cost.quantize(Decimal("0.0001")),
        last_scale_down=last_scale_down,
    )
    dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    dumped.pop("conditions", None)  # computed by the caller, from the previous ones
    return dumped


def held_conditions(
    previous: Sequence[Mapping[str, Any]], computed: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """While nothing could be read, only InputsAvailable is known: the other conditions stay as stored."""
    return replace_conditions(previous, [c for c in computed if c.get("type") == INPUTS_AVAILABLE])


def activity_missing(
    state: ClusterState, members: Sequence[Node], activity: Mapping[str, Decimal]
) -> str | None:
    """Why the pool must hold although the query worked: its GPU pods run, yet not one of them has a
    fresh sample (exporter down, scrape failing, pods not labelled). Some pods without samples is
    normal (just started); all of them is an outage."""
    gpu_pods = [p for p in _pods_on(state, members) if p.gpus() > 0]
    if not gpu_pods or any(p.key in activity for p in gpu_pods):
        return None
    return f"no fresh GPU sample for any of the pool's {len(gpu_pods)} GPU pod(s)"


def unreadable_until(
    state: ClusterState, members: Sequence[Node], now: datetime, reported: set[tuple[str, str]]
) -> tuple[list[Event], set[tuple[str, str]]]:
    """A Warning, once per object and value, for a do-not-disrupt-until that is not a time (it
    protects meanwhile: fail closed). ``reported`` holds the (object, value) pairs warned about
    before; returned with the events are the pairs found now, to pass in next time."""
    names = {n.name for n in members}
    found = [(f"node {n.name}", n.annotations) for n in members] + [
        (f"pod {p.key}", p.annotations) for p in state.snapshot.pods if p.node_name in names
    ]
    events = []
    seen: set[tuple[str, str]] = set()
    for what, marks in found:
        until = protected_until(marks, now, what)
        if not until.unreadable:
            continue
        key = (what, marks.get(DO_NOT_DISRUPT_UNTIL, ""))
        seen.add(key)
        if key not in reported:
            events.append(Event("Warning", "InvalidAnnotation", until.reason))
    return events, seen


def _pods_on(state: ClusterState, members: Sequence[Node]) -> list[Pod]:
    """The pool's pods that hold their node: bound to one of its nodes and not finished."""
    names = {n.name for n in members}
    return [p for p in state.snapshot.pods if p.node_name in names and not p.terminal]
