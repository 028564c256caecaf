"""GPUNodePool: a group of alike GPU nodes, what they cost, and how they may be consolidated."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator

from rightsizer.api.v1alpha1.common import (
    AGE_COLUMN,
    CONDITIONS_LIST,
    ApiObject,
    Condition,
    Currency,
    Duration,
    Matches,
    Number,
    ObjectMeta,
    Price,
    PrinterColumn,
    ResourceInfo,
    Rule,
    SpecModel,
    StatusModel,
    Watts,
)
from rightsizer.api.v1alpha1.pool_provider import (
    LabelValue,
    NodePoolProvider,
    ProviderType,
)
from rightsizer.core.budgets import REASON_EMPTY, REASON_UNDERUTILIZED
from rightsizer.core.snapshot import KARPENTER_NODEPOOL_LABEL
from rightsizer.core.surge import MakeBeforeBreak


class ConsolidationPolicy(StrEnum):
    """WhenEmpty: remove only nodes without movable GPU pods; WhenUnderutilized: also move pods
    to empty under-used nodes."""

    WHEN_EMPTY = "WhenEmpty"
    WHEN_UNDERUTILIZED = "WhenUnderutilized"


class DisruptionReason(StrEnum):
    """Why a node is disrupted, in Karpenter's words: Empty (no pods to move) or Underutilized
    (its pods are moved so it can go)."""

    EMPTY = REASON_EMPTY
    UNDERUTILIZED = REASON_UNDERUTILIZED


BUDGET_NODES_PATTERN = r"^((100|[0-9]{1,2})%|[0-9]+)$"
# Five cron fields, or one of the macros cron libraries share.
CRON_PATTERN = r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class DisruptionBudget(SpecModel):
    """At most `nodes` of the pool's nodes may be disrupted at once, always or during a window."""

    nodes: Annotated[
        str,
        Field(max_length=8),
        Matches(BUDGET_NODES_PATTERN, "must be a node count such as 1 or a percentage such as 10%"),
    ] = Field(default="10%", description='A node count ("1") or a percentage of the pool\'s nodes ("10%").')
    schedule: (
        Annotated[
            str,
            Field(max_length=128),
            Matches(CRON_PATTERN, "must be a cron schedule such as '0 9 * * 1-5' or a macro such as @daily"),
        ]
        | None
    ) = Field(default=None, description="Cron schedule (UTC) when the budget starts to apply.")
    duration: Duration | None = Field(
        default=None, description="How long the budget applies after each scheduled start, e.g. 8h."
    )
    reasons: tuple[DisruptionReason, ...] = Field(
        default=(),
        max_length=2,
        description="The disruptions this budget limits (Empty, Underutilized); unset: every disruption.",
    )

    rules = (
        Rule(
            cel="has(self.schedule) == has(self.duration)",
            message="spec.disruption.budgets[].schedule and duration must be set together",
            check=lambda b: (b.schedule is None) == (b.duration is None),
        ),
    )


class Disruption(SpecModel):
    """How nodes are disrupted: how many at once (the most restrictive active budget wins), and
    whether serving replicas are raised before their pods are evicted."""

    budgets: tuple[DisruptionBudget, ...] = Field(
        default=(DisruptionBudget(nodes="10%"),),
        max_length=50,
        description="Budgets; default: 10% of the pool's nodes at a time.",
    )
    make_before_break: MakeBeforeBreak = Field(
        default=MakeBeforeBreak.INFERENCE_ONLY,
        description=(
            "Before a drain evicts Ready pods of a Deployment or StatefulSet, raise its replicas by as "
            "many, wait until they are available, evict, then restore the count, so serving capacity "
            "never dips: InferenceOnly (default; pods of Inference GPUWorkloads), Always, or Never. "
            "Surge pods that are not available within the drain timeout stop the drain."
        ),
    )


class ReplacementType(SpecModel):
    """A cheaper or smaller node shape the pool may replace nodes with."""

    instance_type: str = Field(
        min_length=1,
        max_length=63,
        description="Instance type (node.kubernetes.io/instance-type) of the shape.",
    )
    gpu_model: str = Field(min_length=1, max_length=63, description="GPU product label of the shape.")
    gpus_per_node: int = Field(ge=0, le=64, description="GPUs per node of the shape.")
    gpu_memory_mib: int | None = Field(
        default=None, ge=1, alias="gpuMemoryMiB", description="Memory of one GPU, MiB."
    )
    price_per_node_hour: Price = Field(description="Price of one node of the shape for one hour.")


_KARPENTER = "(has(self.provider) && self.provider.type == 'karpenter')"


class GPUNodePoolSpec(SpecModel):
    """Which nodes form the pool, what they cost, and how they may be scaled and consolidated."""

    node_selector: Annotated[dict[str, LabelValue], Field(min_length=1, max_length=16)] | None = Field(
        default=None,
        description=(
            "Labels selecting the pool's nodes, e.g. {rightsizer.io/pool: a100}. Optional with provider "
            "karpenter: the nodes of its NodePool (label karpenter.sh/nodepool)."
        ),
    )
    provider: NodePoolProvider = Field(default=NodePoolProvider(), description="Who adds and removes nodes.")
    gpu_model: str = Field(
        min_length=1, max_length=63, description="GPU product label of the nodes, e.g. NVIDIA-A100-SXM4-80GB."
    )
    gpus_per_node: int = Field(ge=1, le=64, description="GPUs per node.")
    gpu_memory_mib: int | None = Field(
        default=None,
        ge=1,
        alias="gpuMemoryMiB",
        description="Memory of one GPU, MiB (for smaller-model and MIG recommendations).",
    )
    price_per_gpu_hour: Price | None = Field(
        default=None,
        description=(
            "Price of one GPU for one hour. Set this or pricePerNodeHour; with provider karpenter both may "
            "be left out: each node is priced from its instance type (see README, Prices)."
        ),
    )
    price_per_node_hour: Price | None = Field(
        default=None, description="Price of one node for one hour. Set this or pricePerGpuHour."
    )
    cpu_core_price_per_hour: Price | None = Field(
        default=None,
        description=(
            "Price of one CPU core for one hour: GPU pods pay it for their CPU requests, the pool for its "
            "nodes' allocatable cores."
        ),
    )
    watts_per_gpu: Watts | None = Field(
        default=None, description="Rated power of one busy GPU, W; used when power draw is not measured."
    )
    idle_watts_per_gpu: Watts | None = Field(default=None, description="Power of one idle GPU, W.")
    pue: Number = Field(
        default=Decimal(1),
        ge=1,
        le=3,
        description=(
            "Power usage effectiveness of the data centre (1.0-3.0, typically 1.1-1.6); energy x PUE."
        ),
    )
    energy_price_per_kwh: Price = Field(default=Decimal(0), description="Price of one kWh.")
    overhead_per_hour: Price = Field(
        default=Decimal(0), description="Fixed cost per node-hour on top (operations, storage, bandwidth)."
    )
    currency: Currency = Field(default="USD", description="Currency of every price in this pool.")
    min_nodes: int = Field(default=0, ge=0, description="Never scale below this many nodes.")
    max_nodes: int | None = Field(default=None, ge=0, description="Never scale above this many nodes.")
    scale_down_after: Duration = Field(
        default=timedelta(minutes=10), description="Remove a node after it has been idle this long."
    )
    consolidation_policy: ConsolidationPolicy = Field(
        default=ConsolidationPolicy.WHEN_UNDERUTILIZED,
        description="WhenEmpty or WhenUnderutilized (default).",
    )
    consolidate_after: Duration = Field(
        default=timedelta(minutes=5),
        description="A node is a consolidation candidate only after its pods have not changed for this long.",
    )
    disruption: Disruption = Field(
        default=Disruption(),
        description="How many nodes may be disrupted at once, and whether serving replicas are raised first.",
    )
    allow_training_disruption: bool = Field(
        default=False, description="May training pods be moved to empty nodes (default no)?"
    )
    startup_grace_period: Duration = Field(
        default=timedelta(minutes=10),
        description=(
            "A pod Ready for less than this (or still starting within it) is never moved: large models "
            "take minutes to load. A GPUWorkload's protection.startupGracePeriod overrides it."
        ),
    )
    gang_labels: tuple[Annotated[str, Field(min_length=1, max_length=317)], ...] = Field(
        default=(),
        max_length=16,
        description=(
            "Labels naming pod groups that only work together, besides the known ones (JobSet, Kubeflow "
            "jobs, LeaderWorkerSet, RayCluster, PodGroup, Kueue pod groups): such pods are never moved."
        ),
    )
    checkpoint_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description=(
            "How long a drain waits for pods annotated rightsizer.io/checkpoint-before-evict to answer "
            "rightsizer.io/checkpoint-done; without an answer the drain stops and the node is kept."
        ),
    )
    consolidate_when_activity_unknown: bool = Field(
        default=False,
        description=(
            "May a node holding a GPU pod whose GPU activity is unknown be drained on requests alone "
            "(default no: unknown is never idle)?"
        ),
    )
    replacement_types: tuple[ReplacementType, ...] = Field(
        default=(),
        max_length=16,
        description="Cheaper node shapes a node may be replaced with.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["instanceType"]},
    )

    @property
    def selector(self) -> dict[str, str]:
        """The labels that select the pool's nodes: the nodeSelector, else its Karpenter NodePool's."""
        if self.node_selector:
            return dict(self.node_selector)
        return {KARPENTER_NODEPOOL_LABEL: self.provider.node_pool} if self.provider.node_pool else {}

    @property
    def priced_by_instance_type(self) -> bool:
        return self.price_per_gpu_hour is None and self.price_per_node_hour is None

    rules = (
        Rule(
            cel="!has(self.pricePerGpuHour) || !has(self.pricePerNodeHour)",
            message="only one of spec.pricePerGpuHour and spec.pricePerNodeHour may be set",
            check=lambda s: s.price_per_gpu_hour is None or s.price_per_node_hour is None,
        ),
        Rule(
            cel=_KARPENTER + " || has(self.pricePerGpuHour) || has(self.pricePerNodeHour)",
            message=(
                "one of spec.pricePerGpuHour and spec.pricePerNodeHour must be set "
                "(only a karpenter pool is priced from its nodes' instance types)"
            ),
            check=lambda s: s.provider.type is ProviderType.KARPENTER or not s.priced_by_instance_type,
        ),
        Rule(
            cel=_KARPENTER + " || has(self.nodeSelector)",
            message="spec.nodeSelector is required unless spec.provider.type is karpenter",
            check=lambda s: s.provider.type is ProviderType.KARPENTER or s.node_selector is not None,
            field_path=".nodeSelector",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.maxNodes) || self.minNodes <= self.maxNodes",
            message="spec.minNodes must be <= spec.maxNodes",
            check=lambda s: s.max_nodes is None or s.min_nodes <= s.max_nodes,
            field_path=".minNodes",
        ),
        Rule(
            cel=(
                "!has(self.idleWattsPerGpu) || !has(self.wattsPerGpu)"
                " || self.idleWattsPerGpu <= self.wattsPerGpu"
            ),
            message="spec.idleWattsPerGpu must be <= spec.wattsPerGpu",
            check=lambda s: (
                s.idle_watts_per_gpu is None
                or s.watts_per_gpu is None
                or s.idle_watts_per_gpu <= s.watts_per_gpu
            ),
            field_path=".idleWattsPerGpu",
        ),
    )

    @field_validator("replacement_types")
    @classmethod
    def _distinct_instance_types(cls, shapes: tuple[ReplacementType, ...]) -> tuple[ReplacementType, ...]:
        # The CRD enforces this through x-kubernetes-list-map-keys; no CEL twin needed.
        seen: set[str] = set()
        for shape in shapes:
            if shape.instance_type in seen:
                raise ValueError(f"spec.replacementTypes has instanceType {shape.instance_type} twice")
            seen.add(shape.instance_type)
        return shapes


class GPUNodePoolStatus(StatusModel):
    """The pool as observed."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last acted on.")
    conditions: tuple[Condition, ...] = Field(
        default=(), description="Ready and others.", json_schema_extra=CONDITIONS_LIST
    )
    nodes: int | None = Field(default=None, description="Nodes in the pool.")
    gpus_allocatable: int | None = Field(default=None, description="GPUs allocatable on the pool's nodes.")
    gpus_requested: int | None = Field(
        default=None, description="GPUs requested by pods on the pool's nodes."
    )
    gpus_active: int | None = Field(default=None, description="GPUs busy (above the idle threshold).")
    currency: str | None = Field(default=None, description="Currency of the amounts.")
    cost_per_hour: Number | None = Field(
        default=None,
        description=(
            "Cost of the pool per hour: its nodes' prices and overhead, their CPU cores and the energy of "
            "their GPUs at rated power, as workloads' cost counts them."
        ),
    )
    idle_cost_per_hour: Number | None = Field(
        default=None, description="Part of costPerHour paying for idle GPUs."
    )
    last_scale_down: datetime | None = Field(default=None, description="When a node was last removed.")


class GPUNodePool(ApiObject):
    """A pool of alike GPU nodes: their prices and power for the cost model, and how GPU
    Rightsizer may consolidate and scale them."""

    resource = ResourceInfo(
        kind="GPUNodePool",
        plural="gpunodepools",
        singular="gpunodepool",
        short_names=("gnp",),
        namespaced=False,
        printer_columns=(
            PrinterColumn("Model", "string", ".spec.gpuModel", "GPU model."),
            PrinterColumn("Nodes", "integer", ".status.nodes", "Nodes in the pool."),
            PrinterColumn("GPUs", "integer", ".status.gpusAllocatable", "GPUs allocatable."),
            PrinterColumn("Active", "integer", ".status.gpusActive", "GPUs busy."),
            PrinterColumn("Idle $/h", "number", ".status.idleCostPerHour", "Cost per hour of idle GPUs."),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["rightsizer.io/v1alpha1"] = "rightsizer.io/v1alpha1"
    kind: Literal["GPUNodePool"] = "GPUNodePool"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: GPUNodePoolSpec
    status: GPUNodePoolStatus | None = None
