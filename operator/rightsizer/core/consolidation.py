"""Which nodes can be emptied, in which order, and where their pods go.

One ordered list of methods, cheapest and safest first (the shape of Karpenter's disruption loop):

1. **Empty nodes**: nothing to move; remove them (most expensive first, within budgets).
2. **Drain**: candidates ordered by disruption cost — idle GPUs first, then lowest utilisation,
   fewest pods. Each candidate's pods are placed on the remaining nodes with the
   capacity of every earlier move already reserved; if any pod fits nowhere the node is kept and
   nothing of it is planned. A node that received pods may still be drained later; its guests then
   move on, and the plan names only each pod's final node (every evict lands on a node that stays,
   so each prefix of the plan fits: capacity on kept nodes is only ever consumed).
3. **Replace**: a node whose pods all fit on a cheaper replacement type of its pool is swapped.

Methods 1 and 2 run for GPU nodes first, then for CPU nodes: freeing a GPU node is what pays, and a
CPU pod evicted from a GPU node needs the CPU nodes' room — including empty CPU nodes, which are
only removed afterwards if nothing landed on them.

Pending pods are placed first and their nodes kept, so consolidation never takes the capacity
that the scheduler is about to use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from rightsizer.api.durations import format_duration, format_seconds
from rightsizer.core.binpack import (
    CPU,
    MEMORY,
    PODS,
    Constraints,
    Request,
    ResourceSpace,
    Simulation,
    pod_constraints,
)
from rightsizer.core.budgets import (
    DISRUPTION_TAINTS,
    REASON_EMPTY,
    REASON_UNDERUTILIZED,
    Disposition,
    Mobility,
    PodPolicy,
    TimedRules,
    allowed_disruptions,
    consolidation_due,
    is_disrupting,
    node_block_reason,
    pod_disposition,
)
from rightsizer.core.metrics_view import IDLE_GPU_PERCENT
from rightsizer.core.pools import (
    WHEN_EMPTY,
    PoolAssignment,
    PoolPolicy,
    ReplacementType,
    is_control_plane,
    node_price,
)
from rightsizer.core.protections import DEFAULT_STARTUP_GRACE
from rightsizer.core.quantity import format_cpu
from rightsizer.core.snapshot import (
    GPU_PRODUCT_LABEL,
    HOSTNAME_LABEL,
    INSTANCE_TYPE_LABEL,
    ZONE_LABELS,
    Node,
    Pod,
    PodDisruptionBudget,
    Snapshot,
    is_gpu_resource,
    selector_matches,
)

GPU_COUNT_LABEL = "nvidia.com/gpu.count"


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


def describe(requests: Mapping[str, Decimal]) -> str:
    """Requests as a person reads them: ``2 nvidia.com/gpu, 8 cpu, 64Gi memory``."""
    parts = [f"{v.normalize():f} {k}" for k, v in sorted(requests.items()) if is_gpu_resource(k)]
    if CPU in requests:
        parts.append(f"{format_cpu(requests[CPU])} cpu")
    if MEMORY in requests:
        parts.append(f"{_bytes(requests[MEMORY])} memory")
    parts.extend(
        f"{v.normalize():f} {k}" for k, v in sorted(requests.items()) if "/" in k and not is_gpu_resource(k)
    )
    return ", ".join(parts) or "no requests"


def _bytes(value: Decimal) -> str:
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size:
            return f"{(value / size).quantize(Decimal('0.1')).normalize():f}{suffix}"
    return f"{value.normalize():f}"


def replacement_name(node: str) -> str:
    return f"{node}-replacement"


class _Run:
    """The working state of one consolidation pass; discarded when the outcome is built."""

    def __init__(
        self,
        snapshot: Snapshot,
        assignment: PoolAssignment,
        *,
        now: datetime,
        policies: Mapping[str, PodPolicy],
        activity: Mapping[str, Decimal],
        candidate_since: Mapping[str, datetime],
        options: PlannerOptions,
    ) -> None:
        self.now = now
        self.options = options
        self.assignment = assignment
        self.candidate_since = candidate_since
        self.activity = activity
        self.nodes = snapshot.nodes
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.pool = [assignment.pool_of(n.name) for n in self.nodes]
        self.price = [node_price(n, p) for n, p in zip(self.nodes, self.pool, strict=True)]
        self.skipped: list[Skip] = []
        self.node_reason: dict[int, str] = {}
        self.removed: set[int] = set()
        self.replaced: dict[int, ReplacementType] = {}
        self.received = [False] * len(self.nodes)
        # Drained/emptied nodes in plan order with why, and where moved pods finally land: a pod moved
        # onto a node that is drained later moves on, and the plan names only its final node.
        self.disruptions: list[tuple[int, str]] = []
        self.location: dict[str, int] = {}
        self.pending_on: dict[int, str] = {}
        self.unplaceable = 0

        self.bound: list[list[Pod]] = [[] for _ in self.nodes]
        self.pending: list[Pod] = []
        for pod in snapshot.pods:
            if pod.terminal:
                continue
            if pod.node_name is None:
                if not pod.deleting and not pod.is_mirror:
                    self.pending.append(pod)
                continue
            where = self.index.get(pod.node_name)
            if where is not None:
                self.bound[where].append(pod)

        self.pdbs_of = _match_pdbs(snapshot.pdbs, (p for pods in self.bound for p in pods))
        self.pdb_allowed = {p.key: p.disruptions_allowed for p in snapshot.pdbs}
        # GPU counts are asked for over and over while ordering and placing: compute them once.
        self.node_gpus = [n.gpus() for n in self.nodes]
        self._pod_gpus: dict[str, Decimal] = {}
        self.pdb_used: Counter[str] = Counter()

        self.movable: list[list[Pod]] = [[] for _ in self.nodes]
        self.origin: dict[str, int] = {}
        self.stays: list[list[Pod]] = [[] for _ in self.nodes]
        self.blockers: list[list[tuple[Pod, Disposition]]] = [[] for _ in self.nodes]
        for i, pods in enumerate(self.bound):
            pool = self.pool[i]
            for pod in pods:
                d = pod_disposition(
                    pod,
                    policy=policies.get(pod.key),
                    pdbs=self.pdbs_of.get(pod.key, ()),
                    allow_training=options.allow_training_disruption
                    or (pool is not None and pool.allow_training_disruption),
                    allow_local_storage=options.allow_local_storage,
                    timed=timed_rules(pool, now),
                )
                if d.mobility is Mobility.MOVABLE:
                    self.movable[i].append(pod)
                    self.origin[pod.key] = i
                elif d.mobility is Mobility.STAYS:
                    self.stays[i].append(pod)
                else:
                    self.blockers[i].append((pod, d))

        requested = {k for pods in self.bound for p in pods for k in p.requests}
        requested |= {k for p in self.pending for k in p.requests}
        self.space = ResourceSpace(requested)
        self.request: dict[str, Request] = {}
        for pod in (*(p for pods in self.bound for p in pods), *self.pending):
            self.request[pod.key] = self.space.request(pod.requests)
        # Movable pods on each node as the simulation goes (original ones plus pods moved in).
        self.load: list[list[Pod]] = [list(pods) for pods in self.movable]
        self.constraints: dict[str, Constraints] = {}
        for i, pods in enumerate(self.movable):
            for pod in pods:
                self.constraints[pod.key] = pod_constraints(pod, self._pins(pod, self.nodes[i]))
        for pod in self.pending:
            self.constraints[pod.key] = pod_constraints(pod)

        self.utilisation = [self._utilisation(i) for i in range(len(self.nodes))]
        # Preferred targets first among equal free capacity: nodes that stay anyway, then fuller ones.
        order = sorted(
            range(len(self.nodes)),
            key=lambda i: (self._may_drain(i), -self.utilisation[i], self.nodes[i].name),
        )
        rank = [0] * len(self.nodes)
        for position, i in enumerate(order):
            rank[i] = position
        self.sim = Simulation(
            self.nodes,
            self.space,
            constraints=self.constraints.values(),
            targetable=[_targetable(n) and not self.gpus_pending(i) for i, n in enumerate(self.nodes)],
            rank=rank,
        )
        for i, pods in enumerate(self.bound):
            for pod in pods:
                self.sim.reserve(i, self.request[pod.key], pod)

        self.pool_size: Counter[str] = Counter()
        self.pool_disrupting: Counter[str] = Counter()
        for i, node in enumerate(self.nodes):
            if (pool := self.pool[i]) is not None:
                self.pool_size[pool.name] += 1
                if is_disrupting(node):
                    self.pool_disrupting[pool.name] += 1
        self.pool_planned: Counter[str] = Counter()
        self.pool_removed: Counter[str] = Counter()
        self.pool_launched: Counter[str] = Counter()
        self._allowed: dict[tuple[str, str], int] = {}

    # -- facts about pods and nodes --------------------------------------------------------------

    def gpus(self, pod: Pod) -> Decimal:
        count = self._pod_gpus.get(pod.key)
        if count is None:
            count = self._pod_gpus[pod.key] = pod.gpus()
        return count

    def size_key(self, pod: Pod) -> tuple[Decimal, Decimal, Decimal, str]:
        """Largest first (GPUs, then CPU, then memory): big pods are the hard ones to place."""
        requests = pod.requests
        return (-self.gpus(pod), -requests.get(CPU, Decimal(0)), -requests.get(MEMORY, Decimal(0)), pod.key)

    def gpu_idle(self, pod: Pod) -> bool:
        if self.gpus(pod) <= 0:
            return False
        util = self.activity.get(pod.key)
        return util is not None and util <= self.options.idle_gpu_percent

    def node_idle(self, i: int) -> bool:
        gpu_pods = [p for p in self.bound[i] if self.gpus(p) > 0]
        return bool(gpu_pods) and all(self.gpu_idle(p) for p in gpu_pods)

    def gpus_pending(self, i: int) -> bool:
        """A node of a GPU pool that advertises no GPUs yet (its device plugin is starting): neither
        empty nor a place for pods until it does."""
        pool = self.pool[i]
        return pool is not None and bool(pool.gpus_per_node) and self.node_gpus[i] <= 0

    def _pins(self, pod: Pod, node: Node) -> list[tuple[str, str | None]]:
        """Labels a moved pod must keep: GPU model, the zone of its volumes, the topology domain of
        its spread and anti-affinity constraints (so per-domain counts stay exactly as they are)."""
        pins: list[tuple[str, str | None]] = []
        if self.options.keep_gpu_model and self.gpus(pod) > 0 and node.gpu_model:
            pins.append((GPU_PRODUCT_LABEL, node.gpu_model))
        if pod.has_claims:
            pins.extend((label, node.labels[label]) for label in ZONE_LABELS if label in node.labels)
        keys = {t.topology_key for t in pod.pod_anti_affinity} | {c.topology_key for c in pod.spread}
        pins.extend((key, node.labels.get(key)) for key in keys if key != HOSTNAME_LABEL)
        return pins

    def _utilisation(self, i: int) -> Decimal:
        """Requested share of the node's scarce resource: GPUs on GPU nodes, else max(cpu, memory)."""
        node = self.nodes[i]
        gpus = node.gpus()
        if gpus > 0:
            return sum((self.gpus(p) for p in self.bound[i]), Decimal(0)) / gpus
        shares = [Decimal(0)]
        for name in (CPU, MEMORY):
            capacity = node.allocatable.get(name, Decimal(0))
            if capacity > 0:
                shares.append(
                    sum((p.requests.get(name, Decimal(0)) for p in self.bound[i]), Decimal(0)) / capacity
                )
        return max(shares)

    def _may_drain(self, i: int) -> int:
        node = self.nodes[i]
        blocked = (
            self.pool[i] is None or node_block_reason(node, self.now) is not None or bool(self.blockers[i])
        )
        return 0 if blocked else 1

    def _since(self, i: int) -> datetime | None:
        node = self.nodes[i]
        explicit = self.candidate_since.get(node.name)
        if explicit is not None:
            return explicit
        times = [node.created] + [
            p.started or p.created for p in self.bound[i] if not (p.is_daemon or p.is_mirror)
        ]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def _not_candidate(self, i: int) -> str | None:
        node = self.nodes[i]
        pool = self.pool[i]
        if pool is None:
            if node.name in self.assignment.contested:
                rivals = " and ".join(self.assignment.contested[node.name])
                return f"selected by GPUNodePools {rivals}: it belongs to neither until they are disjoint"
            return "control-plane node" if is_control_plane(node) else "matches no GPUNodePool nodeSelector"
        if (reason := node_block_reason(node, self.now)) is not None:
            return reason
        if self.gpus_pending(i):
            return (
                f"advertises no GPUs yet (pool {pool.name} has {pool.gpus_per_node} per node): "
                "its device plugin is starting"
            )
        if i in self.pending_on:
            return f"capacity reserved for pending pod {self.pending_on[i]}"
        if self.blockers[i]:
            pod, disposition = self.blockers[i][0]
            more = len(self.blockers[i]) - 1
            suffix = f" (+{more} more unmovable pod{'s' if more > 1 else ''})" if more else ""
            return f"pod {pod.key} cannot move: {disposition.reason}{suffix}"
        left = consolidation_due(pool.consolidate_after, self._since(i), self.now)
        if left is not None:
            if pool.consolidate_after is None:
                return f"pool {pool.name} has consolidateAfter: Never"
            return (
                f"consolidateAfter {format_duration(pool.consolidate_after)} not reached "
                f"({format_seconds(left)} left)"
            )
        if (unknown := self._unknown_activity(i, pool)) is not None:
            return unknown
        if pool.consolidation_policy == WHEN_EMPTY and self.movable[i]:
            return f"pool {pool.name} consolidates only empty nodes (WhenEmpty); {len(self.movable[i])} pods"
        return None

    def _unknown_activity(self, i: int, pool: PoolPolicy) -> str | None:
        """Unknown is never idle: a node with a GPU pod nobody measured stays, unless the pool
        consolidates on requests alone."""
        if not self.options.activity_measured or pool.consolidate_unknown_activity:
            return None
        unknown = [p for p in self.movable[i] if self.gpus(p) > 0 and p.key not in self.activity]
        if not unknown:
            return None
        more = f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""
        return (
            f"GPU activity of pod {unknown[0].key}{more} is unknown; pool {pool.name} does not "
            "consolidate on requests alone (consolidateWhenActivityUnknown)"
        )

    # -- budgets ---------------------------------------------------------------------------------

    def _budget_block(self, pool: PoolPolicy, reason: str) -> str | None:
        key = (pool.name, reason)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = allowed_disruptions(
                pool.budgets, self.pool_size[pool.name], self.pool_disrupting[pool.name], self.now, reason
            )
            self._allowed[key] = allowed
        if self.pool_planned[pool.name] >= allowed:
            planned, disrupting = self.pool_planned[pool.name], self.pool_disrupting[pool.name]
            return (
                f"disruption budget of pool {pool.name} allows {allowed} node(s) now "
                f"({planned} planned, {disrupting} already disrupting)"
            )
        return None

    def _min_nodes_block(self, pool: PoolPolicy) -> str | None:
        if self.pool_size[pool.name] - self.pool_removed[pool.name] - 1 < pool.min_nodes:
            return f"pool {pool.name} keeps minNodes={pool.min_nodes}"
        return None

    def _pdb_block(self, pods: Iterable[Pod]) -> tuple[Pod, str] | None:
        need: Counter[str] = Counter()
        first: dict[str, Pod] = {}
        for pod in pods:
            for pdb in self.pdbs_of.get(pod.key, ()):
                need[pdb.key] += 1
                first.setdefault(pdb.key, pod)
        for key, count in need.items():
            allowed = self.pdb_allowed[key]
            if self.pdb_used[key] + count > allowed:
                return first[key], (
                    f"PDB {key} allows {allowed} disruption(s); {self.pdb_used[key]} already planned, "
                    f"draining this node needs {count}"
                )
        return None

    def _commit_disruption(self, i: int, pods: Iterable[Pod] = ()) -> None:
        pool = self.pool[i]
        assert pool is not None
        self.pool_planned[pool.name] += 1
        for pod in pods:
            for pdb in self.pdbs_of.get(pod.key, ()):
                self.pdb_used[pdb.key] += 1

    # -- methods ---------------------------------------------------------------------------------

    def place_pending(self) -> None:
        for pod in sorted(self.pending, key=self.size_key):
            request = self.request[pod.key]
            target = self.sim.find(pod, request, self.constraints[pod.key])
            if target is None:
                self.unplaceable += 1
                self.skipped.append(
                    Skip(
                        None,
                        pod.key,
                        f"pending pod fits on no node ({describe(pod.requests)}): needs new capacity",
                    )
                )
                continue
            self.sim.reserve(target, request, pod)
            self.pending_on.setdefault(target, pod.key)

    def remove_empty(self, candidates: list[int]) -> None:
        for i in sorted(candidates, key=lambda i: (-self.price[i], self.nodes[i].name)):
            pool = self.pool[i]
            assert pool is not None
            block = self._min_nodes_block(pool) or self._budget_block(pool, REASON_EMPTY)
            if block:
                self.node_reason[i] = block
                continue
            reason = "empty: no pods to move" + (
                f" ({len(self.stays[i])} DaemonSet/static pods)" if self.stays[i] else ""
            )
            self._commit_disruption(i)
            self.disruptions.append((i, reason))
            self._remove(i)

    def drain(self, candidates: list[int]) -> None:
        # Utilisation as it is now: earlier moves may have filled some candidates.
        utilisation = {i: self._current_utilisation(i) for i in candidates}

        def order(i: int) -> tuple[object, ...]:
            return (
                not self.node_idle(i),
                utilisation[i],
                len(self.load[i]),
                sum((self.gpus(p) for p in self.load[i]), Decimal(0)),
                self.nodes[i].name,
            )

        for i in sorted(candidates, key=order):
            pool = self.pool[i]
            assert pool is not None
            if pool.consolidation_policy == WHEN_EMPTY:
                self.node_reason[i] = f"pool {pool.name} consolidates only empty nodes (WhenEmpty)"
                continue
            block = self._min_nodes_block(pool) or self._budget_block(pool, REASON_UNDERUTILIZED)
            if block:
                self.node_reason[i] = block
                continue
            first_moves = [p for p in self.load[i] if p.key not in self.location]
            if (pdb := self._pdb_block(first_moves)) is not None:
                pod, why = pdb
                self.node_reason[i] = f"pod {pod.key}: {why}"
                self.skipped.append(Skip(self.nodes[i].name, pod.key, why))
                continue
            placed, stuck = self._try_drain(i)
            if stuck is not None:
                self.node_reason[i] = (
                    f"pod {stuck.key} ({describe(stuck.requests)}) fits on no remaining node"
                    + (
                        " without a GPU"
                        if not self.may_use_gpu_nodes(stuck) and self.gpus(stuck) <= 0
                        else ""
                    )
                )
                continue
            self._commit_disruption(i, first_moves)
            idle = ", GPUs idle" if self.node_idle(i) else ""
            reason = (
                f"underutilised ({utilisation[i] * 100:.0f}% requested{idle}): "
                f"{len(self.movable[i])} pod(s) fit on other nodes"
            )
            for pod, target in placed:
                self.location[pod.key] = target
                self.load[target].append(pod)
                self.received[target] = True
            self.load[i] = []
            self.disruptions.append((i, reason))
            self._remove(i)

    def may_use_gpu_nodes(self, pod: Pod) -> bool:
        """CPU pods that started on a GPU node may fall back to another one; CPU pods from CPU nodes
        only when the option allows it."""
        return self.options.cpu_pods_on_gpu_nodes or self.node_gpus[self.origin[pod.key]] > 0

    def _current_utilisation(self, i: int) -> Decimal:
        capacity, free = self.sim.capacity[i], self.sim.free[i]
        dims = [d for d in self.space.gpu_dims if capacity[d] > 0] or [
            self.space.index[CPU],
            self.space.index[MEMORY],
        ]
        shares = [Decimal(capacity[d] - free[d]) / capacity[d] for d in dims if capacity[d] > 0]
        return max(shares, default=Decimal(0))

    def _try_drain(self, i: int) -> tuple[list[tuple[Pod, int]], Pod | None]:
        placed: list[tuple[Pod, int]] = []
        for pod in sorted(self.load[i], key=self.size_key):
            request = self.request[pod.key]
            target = self.sim.find(
                pod,
                request,
                self.constraints[pod.key],
                exclude=i,
                allow_gpu_nodes=self.may_use_gpu_nodes(pod),
            )
            if target is None:
                for moved, where in reversed(placed):
                    self.sim.release(where, self.request[moved.key], moved)
                    self.sim.reserve(i, self.request[moved.key], moved)
                return [], pod
            self.sim.release(i, request, pod)
            self.sim.reserve(target, request, pod)
            placed.append((pod, target))
        return placed, None

    def replace(self, candidates: list[int]) -> None:
        for i in sorted(candidates, key=lambda i: (-self.price[i], self.nodes[i].name)):
            pool = self.pool[i]
            if pool is None or not pool.replacement_types or i in self.removed or self.received[i]:
                continue
            choice = self._cheapest_replacement(i, pool)
            if choice is None:
                continue
            block = self._budget_block(pool, REASON_UNDERUTILIZED)
            if block is None and pool.max_nodes is not None:
                current = (
                    self.pool_size[pool.name] - self.pool_removed[pool.name] + self.pool_launched[pool.name]
                )
                if current + 1 > pool.max_nodes:
                    block = (
                        f"pool {pool.name} is at maxNodes={pool.max_nodes}; no room to launch a replacement"
                    )
            if block is None and (pdb := self._pdb_block(self.movable[i])) is not None:
                block = f"pod {pdb[0].key}: {pdb[1]}"
            if block:
                self.node_reason[i] = f"could be replaced by {choice.instance_type}, but {block}"
                continue
            self._commit_disruption(i, self.movable[i])
            saving = self.price[i] - choice.price_per_node_hour
            reason = (
                f"pods fit on a cheaper {choice.instance_type} "
                f"(${choice.price_per_node_hour}/h instead of ${self.price[i]}/h, saves ${saving}/h)"
            )
            self.pool_launched[pool.name] += 1
            self.replaced[i] = choice
            self.disruptions.append((i, reason))
            self._remove(i)

    def build_actions(self) -> list[Action]:
        """Per disrupted node, in plan order: (replaceNode,) cordon, evict each pod to its final node,
        removeNode. DaemonSet and static pods go with the node and are not evicted."""
        actions: list[Action] = []
        for i, reason in self.disruptions:
            name = self.nodes[i].name
            pool = self.pool[i]
            pool_name = pool.name if pool is not None else None
            choice = self.replaced.get(i)
            if choice is not None:
                actions.append(
                    Action(
                        "replaceNode",
                        name,
                        to_node=replacement_name(name),
                        reason=reason,
                        pool=pool_name,
                        instance_type=choice.instance_type,
                        price_per_hour=choice.price_per_node_hour,
                    )
                )
            actions.append(Action("cordon", name, reason=reason, pool=pool_name))
            for pod in sorted(self.movable[i], key=self.size_key):
                if choice is not None:
                    target = replacement_name(name)
                    why = f"replace {name} by {target}"
                else:
                    target = self.nodes[self.location[pod.key]].name
                    why = f"drain {name}: fits on {target}"
                actions.append(Action("evict", name, pod=pod.key, to_node=target, reason=why, pool=pool_name))
            actions.append(Action("removeNode", name, reason=reason, pool=pool_name))
        return actions

    def _cheapest_replacement(self, i: int, pool: PoolPolicy) -> ReplacementType | None:
        for choice in sorted(pool.replacement_types, key=lambda r: (r.price_per_node_hour, r.instance_type)):
            if choice.price_per_node_hour >= self.price[i]:
                break
            if self._fits_replacement(i, choice):
                return choice
        return None

    def _fits_replacement(self, i: int, choice: ReplacementType) -> bool:
        node = self.nodes[i]
        gpus_now = node.gpus()
        allocatable: dict[str, Decimal] = {}
        for name, value in node.allocatable.items():
            if is_gpu_resource(name):
                continue
            if name == PODS:
                allocatable[name] = value
            elif name == CPU and choice.cpu is not None:
                allocatable[name] = choice.cpu
            elif name == MEMORY and choice.memory is not None:
                allocatable[name] = choice.memory
            elif gpus_now > 0:
                # Cloud GPU families scale host CPU/memory with the GPU count.
                scaled = value * choice.gpus_per_node / gpus_now
                allocatable[name] = scaled.to_integral_value(rounding=ROUND_FLOOR) if name != CPU else scaled
            else:
                return False
        if choice.gpus_per_node:
            allocatable["nvidia.com/gpu"] = Decimal(choice.gpus_per_node)
        labels = dict(node.labels)
        labels[INSTANCE_TYPE_LABEL] = choice.instance_type
        labels[HOSTNAME_LABEL] = replacement_name(node.name)
        labels[GPU_COUNT_LABEL] = str(choice.gpus_per_node)
        if choice.gpu_model:
            labels[GPU_PRODUCT_LABEL] = choice.gpu_model
        elif choice.gpus_per_node == 0:
            labels.pop(GPU_PRODUCT_LABEL, None)
        name = labels[HOSTNAME_LABEL]
        free = self.space.capacity(allocatable)
        moving = list(self.movable[i])
        moving += [
            p
            for p in self.stays[i]
            if p.is_daemon and pod_constraints(p).admits(name, labels, node.taints)  # recreated there
        ]
        for pod in moving:
            if pod.key in self.constraints and not self.constraints[pod.key].admits(
                name, labels, node.taints
            ):
                return False
            for d, amount in self.request[pod.key]:
                free[d] -= amount
        return all(v >= 0 for v in free)

    def _remove(self, i: int) -> None:
        self.removed.add(i)
        pool = self.pool[i]
        if pool is not None:
            self.pool_removed[pool.name] += 1
        self.sim.remove_node(i)

    # -- explanations ----------------------------------------------------------------------------

    def explain(self) -> list[Recommendation]:
        recommendations: list[Recommendation] = []
        for i, node in enumerate(self.nodes):
            if i in self.removed:
                continue
            reason = self.node_reason.get(i, "kept")
            self.skipped.append(Skip(node.name, None, reason))
            if self.pool[i] is not None:
                for pod, disposition in self.blockers[i]:
                    self.skipped.append(Skip(node.name, pod.key, disposition.reason))
            if node.gpus() <= 0:
                continue
            gpu_pods = [p for p in self.bound[i] if self.gpus(p) > 0]
            if self.node_idle(i):
                worst = max(self.activity[p.key] for p in gpu_pods)
                allocated = sum((self.gpus(p) for p in gpu_pods), Decimal(0))
                recommendations.append(
                    Recommendation(
                        node.name,
                        f"{allocated:f} GPU(s) allocated but idle (activity <= {worst:f}%); "
                        f"kept because {reason}. Scale the idle workloads down or allow their disruption "
                        "to free the node.",
                        self.price[i],
                        tuple(p.key for p in gpu_pods),
                    )
                )
            elif not gpu_pods and self.movable[i] and "fits on no remaining node" in reason:
                recommendations.append(
                    Recommendation(
                        node.name,
                        f"GPU node held only by CPU pods that no CPU node has room for ({reason}); "
                        "add CPU capacity to free it.",
                        self.price[i],
                        tuple(p.key for p in self.movable[i]),
                    )
                )
        return recommendations

    def run(self) -> Outcome:
        self.place_pending()
        eligible: list[int] = []
        for i in range(len(self.nodes)):
            why = self._not_candidate(i)
            if why is None:
                eligible.append(i)
            else:
                self.node_reason[i] = why
        # GPU nodes first: that is where the money is, and CPU pods evicted from them may still use
        # empty CPU nodes, which are only removed afterwards if nothing landed on them.
        for gpu_tier in (True, False):
            tier = [i for i in eligible if (self.node_gpus[i] > 0) == gpu_tier]
            self.remove_empty([i for i in tier if not self.load[i]])
            self.drain([i for i in tier if self.load[i]])
        if self.options.replacement:
            self.replace([i for i in eligible if i not in self.removed])
        recommendations = self.explain()
        return Outcome(
            actions=tuple(self.build_actions()),
            skipped=tuple(self.skipped),
            recommendations=tuple(recommendations),
            removed=frozenset(self.nodes[i].name for i in self.removed if i not in self.replaced),
            replaced={self.nodes[i].name: r for i, r in self.replaced.items()},
            pods_unplaceable=self.unplaceable,
        )


def unplaceable_from(
    snapshot: Snapshot,
    assignment: PoolAssignment,
    node: str,
    *,
    now: datetime,
    policies: Mapping[str, PodPolicy] | None = None,
    options: PlannerOptions | None = None,
) -> str | None:
    """Why the pods still on ``node`` would not all fit on the other nodes of ``snapshot`` (the live
    cluster right before an eviction, Pending replacements placed first), or None when they do."""
    run = _Run(
        snapshot,
        assignment,
        now=now,
        policies=policies or {},
        activity={},
        candidate_since={},
        options=options or PlannerOptions(),
    )
    i = run.index.get(node)
    if i is None:
        return f"node {node} no longer exists"
    run.place_pending()
    _, stuck = run._try_drain(i)
    if stuck is None:
        return None
    return f"pod {stuck.key} ({describe(stuck.requests)}) no longer fits on any other node"


def timed_rules(pool: PoolPolicy | None, now: datetime) -> TimedRules:
    """The time-dependent protections of ``pool`` (a node outside every pool: the defaults)."""
    if pool is None:
        return TimedRules(now=now, startup_grace=DEFAULT_STARTUP_GRACE)
    return TimedRules(now=now, startup_grace=pool.startup_grace_period, gang_labels=pool.gang_labels)


def _targetable(node: Node) -> bool:
    """May the simulation place pods here? Not on cordoned, deleting, NotReady or draining nodes
    (whoever drains them), nor on nodes Karpenter has not registered yet."""
    return not (
        node.unschedulable
        or node.deleting
        or not node.ready
        or any(t.key in DISRUPTION_TAINTS for t in node.taints)
    )


def _match_pdbs(
    pdbs: Iterable[PodDisruptionBudget], pods: Iterable[Pod]
) -> dict[str, tuple[PodDisruptionBudget, ...]]:
    """PDBs selecting each pod. PDBs are indexed by one of their matchLabels so that a pod is only
    checked against PDBs that could select it (thousands of pods times hundreds of PDBs otherwise)."""
    by_label: dict[tuple[str, str, str], list[PodDisruptionBudget]] = {}
    unindexed: dict[str, list[PodDisruptionBudget]] = {}
    for pdb in pdbs:
        if pdb.selector is not None and pdb.selector.match_labels:
            key, value = pdb.selector.match_labels[0]
            by_label.setdefault((pdb.namespace, key, value), []).append(pdb)
        else:
            unindexed.setdefault(pdb.namespace, []).append(pdb)
    matched: dict[str, tuple[PodDisruptionBudget, ...]] = {}
    for pod in pods:
        candidates = list(unindexed.get(pod.namespace, ()))
        for key, value in pod.labels.items():
            candidates.extend(by_label.get((pod.namespace, key, value), ()))
        hits = tuple(p for p in candidates if selector_matches(p.selector, pod.labels))
        if hits:
            matched[pod.key] = hits
    return matched


def consolidate(
    snapshot: Snapshot,
    assignment: PoolAssignment,
    *,
    now: datetime,
    policies: Mapping[str, PodPolicy] | None = None,
    activity: Mapping[str, Decimal] | None = None,
    candidate_since: Mapping[str, datetime] | None = None,
    options: PlannerOptions | None = None,
) -> Outcome:
    """Run the consolidation methods in order on a snapshot and return what they decided."""
    return _Run(
        snapshot,
        assignment,
        now=now,
        policies=policies or {},
        activity=activity or {},
        candidate_since=candidate_since or {},
        options=options or PlannerOptions(),
    ).run()
