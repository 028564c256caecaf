"""Snapshot → Plan: ordered, explained actions plus what they are worth.

Inputs beyond the snapshot, all optional:

* ``pools``: GPUNodePools as :class:`PoolPolicy` (None: one default pool per GPU model/instance type);
* ``pod_policies``: what GPUWorkloads say about pods (protected, training, allowed to move), keyed
  ``namespace/name``;
* ``gpu_activity``: per-pod GPU utilisation in percent (missing means unknown, never idle);
* ``candidate_since``: since when each node has been a consolidation candidate (for consolidateAfter;
  default: the node's creation or its newest pod's start, whichever is later).

The planner is pure: ``now`` is an input, and ``Summary.plan_seconds`` is filled by the caller that
owns a clock (:meth:`Plan.timed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from rightsizer.core.budgets import PodPolicy
from rightsizer.core.consolidation import consolidate
from rightsizer.core.consolidation_types import Action, Outcome, PlannerOptions, Recommendation, Skip
from rightsizer.core.pools import PoolAssignment, PoolPolicy, assign_pools, default_assignment, node_price
from rightsizer.core.snapshot import Snapshot

__all__ = [
    "Action",
    "Plan",
    "PlanInput",
    "PlannerOptions",
    "PodPolicy",
    "Recommendation",
    "Skip",
    "Summary",
    "plan",
]

_CENTS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class PlanInput:
    snapshot: Snapshot
    now: datetime
    pools: tuple[PoolPolicy, ...] | None = None
    pod_policies: Mapping[str, PodPolicy] = field(default_factory=dict)
    gpu_activity: Mapping[str, Decimal] = field(default_factory=dict)
    candidate_since: Mapping[str, datetime] = field(default_factory=dict)
    options: PlannerOptions = field(default_factory=PlannerOptions)


@dataclass(frozen=True, slots=True)
class Summary:
    nodes_before: int
    nodes_after: int
    gpu_nodes_before: int
    gpu_nodes_after: int
    pods_moved: int
    pods_unplaceable: int  # pending pods that fit on no node the plan keeps
    cost_per_hour_before: Decimal
    cost_per_hour_after: Decimal
    plan_seconds: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "nodesBefore": self.nodes_before,
            "nodesAfter": self.nodes_after,
            "gpuNodesBefore": self.gpu_nodes_before,
            "gpuNodesAfter": self.gpu_nodes_after,
            "podsMoved": self.pods_moved,
            "podsUnplaceable": self.pods_unplaceable,
            "costPerHourBefore": _money(self.cost_per_hour_before),
            "costPerHourAfter": _money(self.cost_per_hour_after),
            "planSeconds": None if self.plan_seconds is None else round(self.plan_seconds, 4),
        }


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    skipped: tuple[Skip, ...]
    recommendations: tuple[Recommendation, ...]
    summary: Summary

    def timed(self, seconds: float) -> Plan:
        """The same plan with the wall time the caller measured."""
        return replace(self, summary=replace(self.summary, plan_seconds=seconds))

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `rightsizer plan --output json`."""
        return {
            "summary": self.summary.to_dict(),
            "actions": [_action(a) for a in self.actions],
            "skipped": [{"node": s.node, "pod": s.pod, "reason": s.reason} for s in self.skipped],
            "recommendations": [
                {
                    "node": r.node,
                    "message": r.message,
                    "savingsPerHour": _money(r.savings_per_hour),
                    "pods": list(r.pods),
                }
                for r in self.recommendations
            ],
        }


def _money(value: Decimal) -> float:
    return float(value.quantize(_CENTS))


def _action(action: Action) -> dict[str, object]:
    result: dict[str, object] = {
        "type": action.type,
        "node": action.node,
        "pod": action.pod,
        "toNode": action.to_node,
        "reason": action.reason,
        "pool": action.pool,
    }
    if action.instance_type is not None:
        result["instanceType"] = action.instance_type
    if action.price_per_hour is not None:
        result["pricePerHour"] = _money(action.price_per_hour)
    return result


def assignment_for(snapshot: Snapshot, pools: tuple[PoolPolicy, ...] | None) -> PoolAssignment:
    return default_assignment(snapshot.nodes) if pools is None else assign_pools(snapshot.nodes, pools)


def plan(inputs: PlanInput) -> Plan:
    """Decide which nodes to empty and where their pods go; nothing is executed here."""
    snapshot = inputs.snapshot
    assignment = assignment_for(snapshot, inputs.pools)
    outcome = consolidate(
        snapshot,
        assignment,
        now=inputs.now,
        policies=inputs.pod_policies,
        activity=inputs.gpu_activity,
        candidate_since=inputs.candidate_since,
        options=inputs.options,
    )
    return Plan(
        actions=outcome.actions,
        skipped=outcome.skipped,
        recommendations=outcome.recommendations,
        summary=summarise(snapshot, assignment, outcome),
    )


def summarise(snapshot: Snapshot, assignment: PoolAssignment, outcome: Outcome) -> Summary:
    before = Decimal(0)
    after = Decimal(0)
    gpu_after = 0
    for node in snapshot.nodes:
        price = node_price(node, assignment.pool_of(node.name))
        before += price
        if node.name in outcome.removed:
            continue
        replacement = outcome.replaced.get(node.name)
        if replacement is not None:
            after += replacement.price_per_node_hour
            gpu_after += replacement.gpus_per_node > 0
        else:
            after += price
            gpu_after += node.gpus() > 0
    return Summary(
        nodes_before=len(snapshot.nodes),
        nodes_after=len(snapshot.nodes) - len(outcome.removed),
        gpu_nodes_before=sum(1 for n in snapshot.nodes if n.gpus() > 0),
        gpu_nodes_after=gpu_after,
        pods_moved=sum(1 for a in outcome.actions if a.type == "evict"),
        pods_unplaceable=outcome.pods_unplaceable,
        cost_per_hour_before=before,
        cost_per_hour_after=after,
    )
