"""Node pools as the planner sees them: which nodes belong together, what they cost, how they may shrink.

A :class:`PoolPolicy` is the planner's own frozen view of a GPUNodePool (the operator converts the
API's validated object into one, in ``rightsizer.runtime.mapping``). Without pool definitions,
:func:`default_assignment` groups nodes by GPU model (``nvidia.com/gpu.product``) or instance type
and prices them from the price their provider labelled them with (:data:`INSTANCE_PRICE_LABEL`, as
Karpenter's kwok provider does) or from :data:`DEFAULT_GPU_PRICES`; so is a Karpenter pool that sets no
price.

Default prices (USD per GPU-hour, on-demand list prices rounded; the GPU price includes its host):

============  ======
GPU model     $/GPU-h
============  ======
B200          8.00
H200          6.00
H100          5.00
A100 80GB     3.00
A100 (40GB)   2.50
V100          2.00
L40S          1.50
A10G / A10    1.00
L4            0.80
T4            0.35
other GPU     2.00
============  ======

Nodes without GPUs cost :data:`DEFAULT_CPU_CORE_PRICE` per allocatable core-hour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from rightsizer.core.budgets import NodeBudget
from rightsizer.core.cost import RunningCosts
from rightsizer.core.matching import selector_matches
from rightsizer.core.protections import DEFAULT_CHECKPOINT_TIMEOUT, DEFAULT_STARTUP_GRACE
from rightsizer.core.snapshot import (
    GPU_PRODUCT_LABEL,
    INSTANCE_PRICE_LABEL,
    INSTANCE_TYPE_LABEL,
    LabelSelector,
    Node,
    Taint,
)
from rightsizer.core.surge import MakeBeforeBreak

WHEN_EMPTY = "WhenEmpty"
WHEN_UNDERUTILIZED = "WhenUnderutilized"

DEFAULT_GPU_PRICES: tuple[tuple[frozenset[str], Decimal], ...] = (
    (frozenset({"B200"}), Decimal("8.00")),
    (frozenset({"H200"}), Decimal("6.00")),
    (frozenset({"H100"}), Decimal("5.00")),
    (frozenset({"A100", "80GB"}), Decimal("3.00")),
    (frozenset({"A100"}), Decimal("2.50")),
    (frozenset({"V100"}), Decimal("2.00")),
    (frozenset({"L40S"}), Decimal("1.50")),
    (frozenset({"A10G"}), Decimal("1.00")),
    (frozenset({"A10"}), Decimal("1.00")),
    (frozenset({"L4"}), Decimal("0.80")),
    (frozenset({"T4"}), Decimal("0.35")),
)
DEFAULT_UNKNOWN_GPU_PRICE = Decimal("2.00")
DEFAULT_CPU_CORE_PRICE = Decimal("0.04")
# The GPUNodePool default: a node is a candidate once its pods have not changed for 5 minutes.
DEFAULT_CONSOLIDATE_AFTER = timedelta(minutes=5)
DEFAULT_SCALE_DOWN_AFTER = timedelta(minutes=10)
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True, slots=True)
class ReplacementType:
    """A smaller/cheaper node the pool can launch instead of an underused one. Its CPU and memory
    are the current node's scaled by the GPU ratio (cloud GPU families scale host size with GPU
    count)."""

    instance_type: str
    gpu_model: str | None
    gpus_per_node: int
    price_per_node_hour: Decimal


@dataclass(frozen=True, slots=True)
class NewNode:
    """What a node the pool adds carries, as the scheduler sees it: its provider's template labels
    with the pool's nodeSelector and GPU model over them, and the template's taints."""

    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    name: str
    node_selector: LabelSelector | None = None
    gpu_model: str | None = None
    gpus_per_node: int | None = None
    price_per_gpu_hour: Decimal | None = None
    price_per_node_hour: Decimal | None = None
    overhead_per_hour: Decimal = Decimal(0)  # fixed cost per node-hour on top of the price
    min_nodes: int = 0
    max_nodes: int | None = None
    consolidation_policy: str = WHEN_UNDERUTILIZED
    consolidate_after: timedelta = DEFAULT_CONSOLIDATE_AFTER
    scale_down_after: timedelta = DEFAULT_SCALE_DOWN_AFTER  # an empty node goes once empty this long
    budgets: tuple[NodeBudget, ...] = ()  # empty: the default 10%
    allow_training_disruption: bool = False
    replacement_types: tuple[ReplacementType, ...] = ()
    provider: str = "none"
    startup_grace_period: timedelta = DEFAULT_STARTUP_GRACE  # pods Ready for less are never moved
    gang_labels: tuple[str, ...] = ()  # labels naming pod groups beyond the known ones
    consolidate_unknown_activity: bool = False  # may nodes whose GPU activity is unknown be drained?
    checkpoint_timeout: timedelta = DEFAULT_CHECKPOINT_TIMEOUT  # how long a drain waits for a checkpoint
    make_before_break: MakeBeforeBreak = MakeBeforeBreak.INFERENCE_ONLY  # whose replicas a drain raises first
    running: RunningCosts = field(default_factory=RunningCosts)  # CPU and GPU energy: the pool's cost only
    currency: str = "USD"  # of every price above
    new_node: NewNode = NewNode()  # what a node added for Pending pods would look like


@dataclass(frozen=True, slots=True)
class PoolAssignment:
    """Pools by name and the pool of each node; nodes outside every pool are absent from node_pool.

    ``contested`` lists the nodes that several pools select, with those pools' names (sorted): such
    a node belongs to none of them, so nothing consolidates, prices or scales it by a guess.
    """

    pools: Mapping[str, PoolPolicy] = field(default_factory=dict)
    node_pool: Mapping[str, str] = field(default_factory=dict)
    contested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def pool_of(self, node: str) -> PoolPolicy | None:
        name = self.node_pool.get(node)
        return self.pools[name] if name is not None else None

    def overlaps(self, pool: str) -> dict[str, tuple[str, ...]]:
        """For ``pool``: each other pool whose nodeSelector selects some of the same nodes, and those
        nodes (sorted). Empty when the pool's selector is disjoint from every other's."""
        shared: dict[str, list[str]] = {}
        for node, names in sorted(self.contested.items()):
            if pool in names:
                for other in names:
                    if other != pool:
                        shared.setdefault(other, []).append(node)
        return {other: tuple(nodes) for other, nodes in sorted(shared.items())}


# ---------------------------------------------------------------------------------------------
# Which node belongs to which pool


def is_control_plane(node: Node) -> bool:
    return any(label in node.labels for label in CONTROL_PLANE_LABELS)


def assign_pools(nodes: Sequence[Node], pools: Sequence[PoolPolicy]) -> PoolAssignment:
    """Each node joins the one pool whose nodeSelector matches it. A node two or more pools select is
    *contested*: it joins none (which pool's prices, budgets and provider would apply is a guess), and
    the pools are told so. An empty selector would claim every node, so it matches nothing."""
    ordered = sorted(pools, key=lambda p: p.name)
    node_pool: dict[str, str] = {}
    contested: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        matching = tuple(
            pool.name
            for pool in ordered
            if pool.node_selector is not None
            and pool.node_selector != LabelSelector()
            and selector_matches(pool.node_selector, node.labels)
        )
        if len(matching) == 1:
            node_pool[node.name] = matching[0]
        elif matching:
            contested[node.name] = matching
    return PoolAssignment(pools={p.name: p for p in pools}, node_pool=node_pool, contested=contested)


def default_pool_key(node: Node) -> str:
    return node.labels.get(GPU_PRODUCT_LABEL) or node.labels.get(INSTANCE_TYPE_LABEL) or "unlabelled"


def default_assignment(nodes: Sequence[Node]) -> PoolAssignment:
    """Without GPUNodePools: one pool per GPU model (or instance type), default policy and prices.

    Control-plane nodes are left out: they are never consolidation candidates.
    """
    node_pool = {n.name: default_pool_key(n) for n in nodes if not is_control_plane(n)}
    pools = {name: PoolPolicy(name=name) for name in sorted(set(node_pool.values()))}
    return PoolAssignment(pools=pools, node_pool=node_pool)


# ---------------------------------------------------------------------------------------------
# Prices

_TOKEN = re.compile(r"[A-Z0-9]+")


def default_gpu_price(model: str | None) -> Decimal:
    tokens = set(_TOKEN.findall((model or "").upper()))
    for required, price in DEFAULT_GPU_PRICES:
        if required <= tokens:
            return price
    return DEFAULT_UNKNOWN_GPU_PRICE


def instance_price(labels: Mapping[str, str]) -> Decimal | None:
    """The price its provider labelled the node (or NodeClaim) with; None if absent or not a price."""
    raw = labels.get(INSTANCE_PRICE_LABEL)
    if raw is None:
        return None
    try:
        price = Decimal(raw.strip())
    except InvalidOperation:
        return None
    return price if price.is_finite() and price >= 0 else None


def default_node_price(node: Node) -> Decimal:
    """The price of its instance type where the node carries one, else the default table's."""
    labelled = instance_price(node.labels)
    if labelled is not None:
        return labelled
    gpus = node.physical_gpus()
    if gpus > 0:
        return gpus * default_gpu_price(node.gpu_model or node.labels.get(INSTANCE_TYPE_LABEL))
    return node.allocatable.get("cpu", Decimal(0)) * DEFAULT_CPU_CORE_PRICE


def node_price(node: Node, pool: PoolPolicy | None) -> Decimal:
    """Hourly price of a node: the pool's node or GPU price, else its instance type's or the default
    table's (a Karpenter pool may leave prices to its instance types), plus the pool's overhead."""
    if pool is None:
        return default_node_price(node)
    if pool.price_per_node_hour is not None:
        return pool.price_per_node_hour + pool.overhead_per_hour
    if pool.price_per_gpu_hour is not None:
        gpus = node.physical_gpus() or Decimal(pool.gpus_per_node or 0)
        return gpus * pool.price_per_gpu_hour + pool.overhead_per_hour
    return default_node_price(node) + pool.overhead_per_hour


def node_cost(node: Node, pool: PoolPolicy | None) -> Decimal:
    """What a node costs its pool per hour: its price (:func:`node_price`, what removing it saves and
    what a replacement shape is compared with) plus its allocatable CPU cores and its GPUs' energy,
    priced as a workload's cost prices them, so a workload filling a node costs what the node does."""
    price = node_price(node, pool)
    if pool is None:
        return price
    return price + pool.running.per_hour(node.allocatable.get("cpu", Decimal(0)), node.physical_gpus())


def idle_gpu_cost(
    nodes: Sequence[Node], pool: PoolPolicy | None, busy_gpus: Mapping[str, Decimal]
) -> Decimal:
    """What a pool pays per hour for GPUs that do nothing: each node's price times its share of GPUs
    not busy (``busy_gpus`` by node name, physical GPUs). One rule for the pool's status and for
    ``rightsizer report``, so the two never disagree about waste."""
    total = Decimal(0)
    for node in nodes:
        gpus = node.physical_gpus()
        if gpus <= 0:
            continue
        idle = max(gpus - busy_gpus.get(node.name, Decimal(0)), Decimal(0))
        total += node_price(node, pool) * idle / gpus
    return total
