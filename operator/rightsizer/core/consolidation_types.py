"""What a consolidation pass takes and what it returns: its options and its frozen results.

Apart from the pass itself so that its working state, its explanations and the planner share these
types without importing the algorithm (nor each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from rightsizer.core.metrics_view import IDLE_GPU_PERCENT
from rightsizer.core.pools import ReplacementType


@dataclass(frozen=True, slots=True)
class PlannerOptions:
    allow_local_storage: bool = False  # move pods with emptyDir/hostPath volumes
    allow_training_disruption: bool = False  # move training pods in every pool
    keep_gpu_model: bool = True  # a GPU pod only moves to a node with its current GPU model
    idle_gpu_percent: Decimal = IDLE_GPU_PERCENT
    replacement: bool = True  # consider cheaper replacement node types
    # CPU-only pods from CPU nodes may use GPU nodes' spare room when no CPU node has it. Off by default:
    # such pods later pin the GPU node ("CPU pod pins a GPU node"), which costs far more than a CPU node.
    cpu_pods_on_gpu_nodes: bool = False
    # GPU activity is being measured (the operator has a source): a GPU pod missing from it is unknown,
    # and its node is drained only where the pool allows consolidation on requests alone. Off for
    # offline plans, which work on requests.
    activity_measured: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    type: str  # cordon | evict | removeNode | replaceNode
    node: str
    pod: str | None = None
    to_node: str | None = None
    reason: str = ""
    pool: str | None = None
    instance_type: str | None = None  # replaceNode: the new node's type
    price_per_hour: Decimal | None = None  # replaceNode: the new node's price


@dataclass(frozen=True, slots=True)
class Skip:
    node: str | None
    pod: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    node: str
    message: str
    savings_per_hour: Decimal
    pods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    actions: tuple[Action, ...]
    skipped: tuple[Skip, ...]
    recommendations: tuple[Recommendation, ...]
    removed: frozenset[str]
    replaced: Mapping[str, ReplacementType] = field(default_factory=dict)
    pods_unplaceable: int = 0
