"""The conditions of a GPUNodePool, computed from what one pass observed.

- ``Ready``: True while the operator manages the pool's nodes; False with ``InvalidPool`` when the
  pool cannot be read, or ``OverlappingSelectors`` while another pool selects some of its nodes.
- ``Conflict``: True with ``OverlappingSelectors`` naming the other pools and the shared nodes. Those
  nodes belong to no pool (see :func:`rightsizer.core.pools.assign_pools`) and the pool does not
  consolidate or add nodes until its selector is disjoint again.
- ``MetricsAvailable`` (only when a GPU activity source is configured): False with
  ``MetricsUnavailable`` while GPU activity cannot be read; the pool then drains nothing (empty nodes
  may still go, Pending pods still get nodes) until it can.

- ``ProviderReady``: False with ``ProviderUnavailable`` while the pool's node-pool provider cannot
  act (e.g. Karpenter not installed, or its NodePool missing), naming the remedy; or with
  ``RemovalStuck`` while a node the provider was asked to remove is still there after the removal
  timeout (a NodeClaim stuck terminating). The pool then drains and adds nothing until it can.

- ``InputsAvailable``: False with ``InputsUnreadable`` while something protection depends on cannot be
  read (GPUWorkloads, PodDisruptionBudgets, ReplicaSets, the cluster itself): "could not read" is
  never "none", so the pool drains nothing with pods until it can.

Transition times move only when a condition's status does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rightsizer.core.conditions import ConditionState, find_condition, merge_conditions

READY = "Ready"
CONFLICT = "Conflict"
OVERLAPPING_SELECTORS = "OverlappingSelectors"
INVALID_POOL = "InvalidPool"
METRICS_AVAILABLE = "MetricsAvailable"
METRICS_UNAVAILABLE = "MetricsUnavailable"
INPUTS_AVAILABLE = "InputsAvailable"
INPUTS_UNREADABLE = "InputsUnreadable"
PROVIDER_READY = "ProviderReady"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
REMOVAL_STUCK = "RemovalStuck"
_LISTED_NODES = 5


@dataclass(frozen=True, slots=True)
class PoolObservation:
    generation: int | None
    nodes: int = 0
    overlaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # other pool -> shared nodes
    problem: str | None = None  # why the pool cannot be read
    metrics_configured: bool = False  # a GPU activity source is set up
    metrics_hold: str | None = None  # why GPU activity could not be read this pass
    inputs_hold: str | None = None  # what protection depends on and could not be read this pass
    provider_hold: str | None = None  # why the node-pool provider cannot act, with the remedy
    removal_hold: str | None = None  # nodes the provider was asked to remove long ago, still there


def overlap_message(overlaps: Mapping[str, tuple[str, ...]]) -> str | None:
    """``node(s) a-0, a-1 also selected by GPUNodePool dup; …`` or None without overlaps."""
    if not overlaps:
        return None
    parts = [
        f"{_nodes(nodes)} also selected by GPUNodePool {other}" for other, nodes in sorted(overlaps.items())
    ]
    return (
        f"{'; '.join(parts)}: nodes selected by two pools belong to neither, so they are not consolidated, "
        "scaled or priced by a pool and this pool adds and removes no nodes; make the nodeSelectors disjoint"
    )


def pool_conditions(
    previous: Sequence[Mapping[str, Any]] | None, observed: PoolObservation, now: datetime
) -> list[dict[str, Any]]:
    """The complete condition list for ``observed``; ``previous`` is the list currently stored."""
    if observed.problem is not None:
        # Whether selectors overlap is unknown while the pool cannot be read: keep what was said.
        said = find_condition(previous, CONFLICT)
        invalid = ConditionState(READY, False, INVALID_POOL, observed.problem)
        return [
            *merge_conditions(previous, [invalid], now, observed.generation),
            *([dict(said)] if said else []),
        ]
    return merge_conditions(previous, [*_membership(observed), *_holds(observed)], now, observed.generation)


def _membership(observed: PoolObservation) -> list[ConditionState]:
    overlap = overlap_message(observed.overlaps)
    if overlap is not None:
        return [
            ConditionState(READY, False, OVERLAPPING_SELECTORS, overlap),
            ConditionState(CONFLICT, True, OVERLAPPING_SELECTORS, overlap),
        ]
    plural = "" if observed.nodes == 1 else "s"
    return [
        ConditionState(READY, True, "Managed", f"{observed.nodes} node{plural} managed"),
        ConditionState(CONFLICT, False, "DisjointSelectors", "no other GPUNodePool selects these nodes"),
    ]


def _holds(observed: PoolObservation) -> list[ConditionState]:
    """What the pool waits for before it drains: GPU activity, protection's inputs, its provider."""
    holds: list[ConditionState] = []
    if observed.metrics_hold is not None:
        message = f"GPU activity unavailable ({observed.metrics_hold}): holding, no node with pods is drained"
        holds.append(ConditionState(METRICS_AVAILABLE, False, METRICS_UNAVAILABLE, message))
    elif observed.metrics_configured:
        holds.append(ConditionState(METRICS_AVAILABLE, True, "ActivityRead", "GPU activity read this pass"))
    if observed.inputs_hold is not None:
        message = f"cannot read {observed.inputs_hold}: holding, no node with pods is drained"
        holds.append(ConditionState(INPUTS_AVAILABLE, False, INPUTS_UNREADABLE, message))
    else:
        holds.append(
            ConditionState(INPUTS_AVAILABLE, True, "InputsRead", "everything protection needs was read")
        )
    if observed.provider_hold is not None:
        message = f"{observed.provider_hold}; holding, no node is drained or added"
        holds.append(ConditionState(PROVIDER_READY, False, PROVIDER_UNAVAILABLE, message))
    elif observed.removal_hold is not None:
        message = f"{observed.removal_hold}; holding, no node is drained or added until they are gone"
        holds.append(ConditionState(PROVIDER_READY, False, REMOVAL_STUCK, message))
    else:
        holds.append(ConditionState(PROVIDER_READY, True, "ProviderReady", "the node-pool provider can act"))
    return holds


def conflict_event(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str] | None:
    """(type, reason, message) of the event a change of ``Conflict`` deserves, or None: a Warning
    when pools start to overlap, a Normal event when they stop."""
    return _transition_event(
        previous,
        current,
        CONFLICT,
        bad="True",
        warning=OVERLAPPING_SELECTORS,
        recovered=("SelectorsDisjoint", "no other GPUNodePool selects this pool's nodes any more"),
    )


def metrics_event(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str] | None:
    """(type, reason, message) when ``MetricsAvailable`` changes: a Warning when the pool starts to
    hold for lack of GPU activity, a Normal event when it can read it again."""
    return _transition_event(
        previous,
        current,
        METRICS_AVAILABLE,
        bad="False",
        warning=METRICS_UNAVAILABLE,
        recovered=("MetricsRecovered", "GPU activity is readable again; consolidation resumes"),
    )


def inputs_event(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str] | None:
    """A Warning when the pool starts holding for unreadable inputs, a Normal event when it stops."""
    return _transition_event(
        previous,
        current,
        INPUTS_AVAILABLE,
        bad="False",
        warning=INPUTS_UNREADABLE,
        recovered=("InputsRecovered", "everything protection needs is readable again; consolidation resumes"),
    )


def provider_event(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str] | None:
    """A Warning when the pool's provider stops being able to act, a Normal event when it can again."""
    return _transition_event(
        previous,
        current,
        PROVIDER_READY,
        bad="False",
        warning=PROVIDER_UNAVAILABLE,
        recovered=("ProviderRecovered", "the node-pool provider can act again; consolidation resumes"),
    )


def _transition_event(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Sequence[Mapping[str, Any]],
    kind: str,
    *,
    bad: str,
    warning: str,
    recovered: tuple[str, str],
) -> tuple[str, str, str] | None:
    # One event per change of a condition's status, never one per pass.
    before, after = find_condition(previous, kind), find_condition(current, kind)
    if not after or before.get("status") == after.get("status"):
        return None
    if after.get("status") == bad:
        return "Warning", str(after.get("reason") or warning), str(after.get("message", ""))
    if before.get("status") == bad:
        return "Normal", *recovered
    return None


def _nodes(nodes: tuple[str, ...]) -> str:
    shown = ", ".join(nodes[:_LISTED_NODES])
    more = f" (+{len(nodes) - _LISTED_NODES} more)" if len(nodes) > _LISTED_NODES else ""
    return f"node{'s' if len(nodes) > 1 else ''} {shown}{more}"
