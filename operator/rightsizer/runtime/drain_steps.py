"""A consolidation plan as drain steps, one per node, and what came of each.

The pool pass turns a plan into steps, the executor runs one step at a time, and the drain runner and
the pool's status read the outcomes: this is what they share, apart from how a drain is carried out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from rightsizer.core.budgets import REASON_EMPTY, REASON_UNDERUTILIZED
from rightsizer.core.planner import Plan


@dataclass(frozen=True)
class NodeStep:
    """Everything the plan says about one node: why, and the pods to evict (empty: already empty)."""

    node: str
    pool: str
    reason: str
    pods: tuple[str, ...]

    @property
    def budget_reason(self) -> str:
        return REASON_UNDERUTILIZED if self.pods else REASON_EMPTY


def node_steps(plan: Plan) -> list[NodeStep]:
    """Group a plan's actions per node, in plan order. Nodes the plan replaces by another type are not
    steps here: launching the replacement is the provider's job and is left to a later pass."""
    replaced = {a.node for a in plan.actions if a.type == "replaceNode"}
    steps: list[NodeStep] = []
    pods: dict[str, list[str]] = {}
    for action in plan.actions:
        if action.node in replaced or action.pool is None:
            continue
        if action.type == "evict" and action.pod:
            pods.setdefault(action.node, []).append(action.pod)
        elif action.type == "removeNode":
            steps.append(NodeStep(action.node, action.pool, action.reason, tuple(pods.get(action.node, ()))))
    return steps


@dataclass(frozen=True)
class ExecutorSettings:
    """How a drain waits: for replacements, between polls, and how long its intent stays its own."""

    drain_timeout: timedelta = timedelta(minutes=5)
    poll_seconds: float = 2.0
    # How long a drain intent stays this process's without renewal; renewed at every step and poll.
    lease: timedelta = timedelta(minutes=2)


class Result(StrEnum):
    REMOVED = "removed"  # drained and handed to the provider
    SKIPPED = "skipped"  # re-validation said no; nothing was touched
    BLOCKED = "blocked"  # an eviction was refused; rolled back
    TIMED_OUT = "timedOut"  # replacements not Running in time; rolled back
    NODE_GONE = "nodeGone"  # the node was deleted by someone else mid-drain; nothing left to undo
    FAILED = "failed"  # the provider could not remove the node; rolled back
    ROLLED_BACK = "rolledBack"  # recovery: an interrupted drain undone
    RESUMED = "resumed"  # recovery: an interrupted removal finished
    TAKEN_OVER = "takenOver"  # another operator process holds the drain now; this one stopped


@dataclass(frozen=True)
class StepOutcome:
    node: str
    pool: str
    result: Result
    message: str
    evicted: tuple[str, ...] = ()
