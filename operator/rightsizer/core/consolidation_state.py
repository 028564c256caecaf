"""The working state of one consolidation pass: the cluster as its simulation sees it.

Bound pods sorted into movable, staying and blocking; requests and placement constraints; the
simulation with every bound pod reserved; what the plan has done so far; and the facts the methods
ask about pods and nodes, down to why a node is no candidate at all. Apart from the methods
(:mod:`rightsizer.core.consolidation`) so that these read as the order they run in, and what may
move, and why not, is decided in one place.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Self

from rightsizer.api.durations import format_duration, format_seconds
from rightsizer.core.binpack import (
    CPU,
    MEMORY,
    Constraints,
    Request,
    ResourceSpace,
    Simulation,
    pod_constraints,
)
from rightsizer.core.budgets import (
    DISRUPTION_TAINTS,
    Disposition,
    Mobility,
    PodPolicy,
    TimedRules,
    consolidation_due,
    node_block_reason,
    pod_disposition,
)
from rightsizer.core.consolidation_types import PlannerOptions, Skip
from rightsizer.core.disruption_ledger import DisruptionLedger
from rightsizer.core.pools import (
    WHEN_EMPTY,
    PoolAssignment,
    PoolPolicy,
    ReplacementType,
    is_control_plane,
    node_price,
)
from rightsizer.core.protections import DEFAULT_STARTUP_GRACE
from rightsizer.core.snapshot import GPU_PRODUCT_LABEL, HOSTNAME_LABEL, ZONE_LABELS, Node, Pod, Snapshot


class ConsolidationState:
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

        self.ledger = DisruptionLedger(
            self.nodes, self.pool, snapshot.pdbs, (p for pods in self.bound for p in pods), now
        )
        # GPU counts are asked for over and over while ordering and placing: compute them once.
        self.node_gpus = [n.gpus() for n in self.nodes]
        self._pod_gpus: dict[str, Decimal] = {}

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
                    pdbs=self.ledger.pdbs_of.get(pod.key, ()),
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

    def fork(self) -> Self:
        """A second pass from the same starting point without building it again (half the planning
        time at 5,000 nodes): what a pass changes is copied, the facts it only reads are shared."""
        other = copy.copy(self)
        other.skipped = list(self.skipped)
        other.node_reason = dict(self.node_reason)
        other.removed = set(self.removed)
        other.replaced = dict(self.replaced)
        other.received = list(self.received)
        other.disruptions = list(self.disruptions)
        other.location = dict(self.location)
        other.pending_on = dict(self.pending_on)
        other.load = [list(pods) for pods in self.load]
        other.ledger = self.ledger.fork()
        other.sim = self.sim.fork()
        return other

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

    def not_candidate(self, i: int) -> str | None:
        """Why node ``i`` is no consolidation candidate at all, or None when it is one."""
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
