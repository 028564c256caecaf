"""Placement simulation on requests: will this pod fit on that node, and which node is best?

Resources are counted the way kube-scheduler's NodeResourcesFit counts them: every requested resource
(cpu, memory, ephemeral storage, ``nvidia.com/gpu`` and any other extended resource) plus one pod
slot must fit in allocatable minus what is already requested. CPU is kept in millicores and everything
else in whole units, rounded up as the API rounds quantities, so the arithmetic is exact integers.

Static constraints (nodeSelector, required node affinity, hard taints, label pins derived from the
pod's current node) are evaluated once per node *class*: nodes that agree on every label any pod
constraint mentions, on hard taints and on the extended resources they offer. Free capacity is kept
in per-class indexes sorted by the free amount of one resource (:mod:`rightsizer.core.free_index`),
so choosing the most-allocated node that still fits (best fit on the pod's scarcest resource) is a
bisection plus a scan that passes whole blocks of nodes without room, instead of a walk over every
node.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from rightsizer.core.free_index import FreeIndex
from rightsizer.core.matching import hard_taints, node_term_matches, tolerates
from rightsizer.core.pod_neighbours import (
    anti_affinity_conflict,
    host_port_conflict,
    needs_neighbour_check,
    spread_allows,
)
from rightsizer.core.snapshot import (
    HOSTNAME_LABEL,
    Node,
    NodeSelectorTerm,
    Pod,
    Taint,
    Toleration,
    is_extended_resource,
    is_gpu_resource,
)

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"

Request = tuple[tuple[int, int], ...]  # sparse (dimension, amount), always including one pod slot
_NOWHERE = (sys.maxsize, 0, 0)


def to_units(name: str, value: Decimal) -> int:
    """Quantity → integer units: millicores for CPU, whole units (bytes, devices) otherwise."""
    scaled = value * 1000 if name == CPU else value
    return int(scaled.to_integral_value(rounding=ROUND_CEILING))


class ResourceSpace:
    """The resource dimensions of one planning run: pods, cpu, memory, then whatever pods request."""

    def __init__(self, requested: Iterable[str]) -> None:
        names = [PODS, CPU, MEMORY]
        names.extend(sorted(set(requested) - set(names)))
        self.names: tuple[str, ...] = tuple(names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(names)}
        self.gpu_dims: frozenset[int] = frozenset(i for i, n in enumerate(names) if is_gpu_resource(n))
        self._units: dict[tuple[str, Decimal], int] = {}  # pods repeat the same few requests

    def units(self, name: str, value: Decimal) -> int:
        key = (name, value)
        amount = self._units.get(key)
        if amount is None:
            amount = self._units[key] = to_units(name, value)
        return amount

    def request(self, requests: Mapping[str, Decimal]) -> Request:
        vector = [(0, 1)]
        for name, value in requests.items():
            amount = self.units(name, value)
            if amount > 0 and name != PODS:
                vector.append((self.index[name], amount))
        return tuple(vector)

    def capacity(self, allocatable: Mapping[str, Decimal]) -> list[int]:
        return [self.units(n, allocatable.get(n, Decimal(0))) for n in self.names]

    def primary(self, request: Request) -> int:
        """The dimension to best-fit on: a GPU/extended resource if any, else CPU, memory, pods."""
        dims = {d for d, _ in request}
        for d, _ in request:
            if d in self.gpu_dims:
                return d
        extended = [d for d in dims if d > 2]
        if extended:
            return min(extended)
        if 1 in dims:
            return 1
        if 2 in dims:
            return 2
        return 0


def add(capacity: list[int], request: Request, sign: int) -> None:
    for d, amount in request:
        capacity[d] += sign * amount


def fits(free: Sequence[int], request: Request) -> bool:
    # A plain loop: this is the innermost check of the planner and all() on a generator is ~2x slower.
    for d, amount in request:  # noqa: SIM110
        if free[d] < amount:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Constraints:
    """Everything static that decides whether a pod may run on a node.

    ``pins`` are labels the pod must keep from its current node (GPU model, zone of its volumes, the
    topology domain of its spread/anti-affinity constraints); a None value means "label absent".
    """

    node_selector: tuple[tuple[str, str], ...] = ()
    node_terms: tuple[NodeSelectorTerm, ...] | None = None
    tolerations: tuple[Toleration, ...] = ()
    pins: tuple[tuple[str, str | None], ...] = ()

    def label_keys(self) -> frozenset[str]:
        keys = {k for k, _ in self.node_selector} | {k for k, _ in self.pins}
        for term in self.node_terms or ():
            keys.update(r.key for r in term.match_expressions)
        return frozenset(keys)

    def uses_node_name(self) -> bool:
        return any(term.match_fields for term in self.node_terms or ())

    def admits(self, name: str, labels: Mapping[str, str], taints: Sequence[Taint]) -> bool:
        for key, value in self.node_selector:
            if labels.get(key) != value:
                return False
        for key, pinned in self.pins:
            if labels.get(key) != pinned:
                return False
        if self.node_terms is not None and not any(
            node_term_matches(t, labels, name) for t in self.node_terms
        ):
            return False
        return all(tolerates(self.tolerations, taint) for taint in hard_taints(taints))


def pod_constraints(pod: Pod, pins: Iterable[tuple[str, str | None]] = ()) -> Constraints:
    return Constraints(
        node_selector=tuple(sorted(pod.node_selector.items())),
        node_terms=pod.required_node_terms,
        tolerations=pod.tolerations,
        pins=tuple(sorted(set(pins), key=lambda p: (p[0], p[1] or ""))),
    )


def _drop(pods: list[Pod], pod: Pod) -> None:
    """list.remove() for the very pod (== on a Pod compares every field of every pod before it).
    Which of two equal pods goes makes no difference: residents are only read for their fields."""
    for k, other in enumerate(pods):
        if other is pod:
            del pods[k]
            return
    pods.remove(pod)  # an equal copy was placed: take the first equal one, as remove() does


# ---------------------------------------------------------------------------------------------
# The simulation


class Simulation:
    """Mutable working state of one planning run (never leaves the core's planner).

    ``rank`` orders nodes of equal free capacity: lower rank is preferred as a target (nodes that
    will stay anyway), so moved pods do not land on nodes the planner wants to empty next.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        space: ResourceSpace,
        *,
        constraints: Iterable[Constraints],
        targetable: Sequence[bool],
        rank: Sequence[int],
    ) -> None:
        self.nodes = nodes
        self.space = space
        self.capacity = [space.capacity(n.allocatable) for n in nodes]
        self.free = [list(c) for c in self.capacity]
        self.rank = list(rank)
        self.residents: list[list[Pod]] = [[] for _ in nodes]
        # Residents with host ports or per-node anti-affinity: the only ones an incoming pod without
        # such rules of its own must be checked against.
        self.notable: list[list[Pod]] = [[] for _ in nodes]
        keys: set[str] = set()
        by_name = False
        for c in constraints:
            keys |= c.label_keys()
            by_name = by_name or c.uses_node_name()
        self._keys = tuple(sorted(keys))
        self._by_name = by_name
        self.node_class: list[int] = [-1] * len(nodes)
        self._members: list[set[int]] = []  # sets: nodes leave one by one, the indexes sort them
        self._representative: list[Node] = []
        self._gpu_class: list[bool] = []
        class_ids: dict[object, int] = {}
        for i, node in enumerate(nodes):
            if not targetable[i]:
                continue
            offered = frozenset(k for k, v in node.allocatable.items() if v > 0 and is_extended_resource(k))
            signature = (
                tuple(node.labels.get(k) for k in self._keys),
                node.name if by_name else None,
                frozenset(hard_taints(node.taints)),
                offered,
            )
            cid = class_ids.get(signature)
            if cid is None:
                cid = class_ids[signature] = len(self._members)
                self._members.append(set())
                self._representative.append(node)
                self._gpu_class.append(any(is_gpu_resource(k) for k in offered))
            self._members[cid].add(i)
            self.node_class[i] = cid
        self._indexes: list[dict[int, FreeIndex]] = [{} for _ in self._members]
        self._feasible: dict[Constraints, tuple[list[int], list[int]]] = {}
        self._searches: dict[Request, tuple[bool, int, int, Request]] = {}
        # Nodes being emptied: out of every index, so that a search never scans past them.
        self._suspended: set[int] = set()

    def fork(self) -> Simulation:
        """An independent copy of the working state; the node classes and caches are shared."""
        other = copy.copy(self)
        other.free = [list(f) for f in self.free]
        other.residents = [list(r) for r in self.residents]
        other.notable = [list(r) for r in self.notable]
        other.node_class = list(self.node_class)
        other._members = [set(m) for m in self._members]
        other._indexes = [
            {dim: index.copy(other.free) for dim, index in by_dim.items()} for by_dim in self._indexes
        ]
        other._suspended = set(self._suspended)
        return other

    # -- static feasibility ----------------------------------------------------------------------

    def feasible_classes(self, constraints: Constraints) -> tuple[list[int], list[int]]:
        """Classes the constraints admit, split into (nodes without GPUs, nodes with GPUs)."""
        cached = self._feasible.get(constraints)
        if cached is None:
            if not constraints.label_keys() <= set(self._keys) or (
                constraints.uses_node_name() and not self._by_name
            ):
                # Classes only tell apart the labels declared up front; anything else would be a silent
                # wrong answer.
                raise ValueError("constraints were not declared when the simulation was built")
            plain: list[int] = []
            gpu: list[int] = []
            for cid, node in enumerate(self._representative):
                if constraints.admits(node.name, node.labels, node.taints):
                    (gpu if self._gpu_class[cid] else plain).append(cid)
            cached = self._feasible[constraints] = (plain, gpu)
        return cached

    # -- capacity bookkeeping --------------------------------------------------------------------

    def _index(self, cid: int, dim: int) -> FreeIndex:
        index = self._indexes[cid].get(dim)
        if index is None:
            entries = (
                (self.free[n][dim], self.rank[n], n) for n in self._members[cid] if n not in self._suspended
            )
            index = self._indexes[cid][dim] = FreeIndex(dim, self.free, entries)
        return index

    def _unindex(self, n: int) -> None:
        cid = self.node_class[n]
        if cid < 0 or n in self._suspended:
            return
        for dim, index in self._indexes[cid].items():
            index.remove((self.free[n][dim], self.rank[n], n))

    def _reindex(self, n: int) -> None:
        cid = self.node_class[n]
        if cid < 0 or n in self._suspended:
            return
        for dim, index in self._indexes[cid].items():
            index.add((self.free[n][dim], self.rank[n], n))

    def reserve(self, n: int, request: Request, pod: Pod | None = None) -> None:
        self._unindex(n)
        add(self.free[n], request, -1)
        self._reindex(n)
        if pod is not None:
            self.residents[n].append(pod)
            if needs_neighbour_check(pod):
                self.notable[n].append(pod)

    def release(self, n: int, request: Request, pod: Pod | None = None) -> None:
        self._unindex(n)
        add(self.free[n], request, +1)
        self._reindex(n)
        if pod is not None:
            _drop(self.residents[n], pod)
            if pod in self.notable[n]:
                self.notable[n].remove(pod)

    def remove_node(self, n: int) -> None:
        """The node leaves the cluster: it is no longer a target."""
        self._unindex(n)
        self._suspended.discard(n)
        cid = self.node_class[n]
        if cid >= 0:
            self._members[cid].remove(n)
            self.node_class[n] = -1

    def suspend(self, nodes: Iterable[int]) -> None:
        """Nodes about to be emptied are no target until resumed; pods still come and go on them."""
        for n in nodes:
            if self.node_class[n] >= 0 and n not in self._suspended:
                self._unindex(n)
                self._suspended.add(n)

    def resume(self, nodes: Iterable[int]) -> None:
        for n in nodes:
            if n in self._suspended:
                self._suspended.remove(n)
                self._reindex(n)

    # -- choosing a target -----------------------------------------------------------------------

    def neighbours_allow(self, pod: Pod, n: int) -> bool:
        """Host ports, per-node anti-affinity (both directions) and per-node spread on node n."""
        own_rules = bool(pod.spread) or any(t.topology_key == HOSTNAME_LABEL for t in pod.pod_anti_affinity)
        others = self.residents[n] if own_rules else self.notable[n]
        if any(anti_affinity_conflict(pod, r) or host_port_conflict(pod, r) for r in others):
            return False
        return not pod.spread or spread_allows(pod, self.residents[n])

    def find(
        self,
        pod: Pod,
        request: Request,
        constraints: Constraints,
        *,
        exclude: int = -1,
        allow_gpu_nodes: bool = True,
    ) -> int | None:
        """The most-allocated node (least free of the pod's primary resource) that fits the pod.

        A pod without GPU requests tries nodes without GPUs first and falls back to GPU nodes only
        when ``allow_gpu_nodes``: CPU pods must not pin GPU nodes while CPU nodes have room.
        """
        plain, gpu = self.feasible_classes(constraints)
        wants_gpu, primary, need, rest = self._search(request)
        tiers = (gpu,) if wants_gpu else ((plain, gpu) if allow_gpu_nodes else (plain,))
        for classes in tiers:
            best = _NOWHERE  # compares above every index entry
            for cid in classes:
                for entry in self._index(cid, primary).fitting(need, rest, best):
                    if entry >= best:
                        break
                    n = entry[2]
                    if n == exclude or not self.neighbours_allow(pod, n):
                        continue
                    best = entry
                    break
            if best is not _NOWHERE:
                return best[2]
        return None

    def _search(self, request: Request) -> tuple[bool, int, int, Request]:
        """GPUs wanted?, the primary dimension, the amount of it, and the rest to check after the
        bisection (the pod slot last: it is seldom what does not fit). Pods repeat a few requests."""
        search = self._searches.get(request)
        if search is None:
            primary = self.space.primary(request)
            rest = sorted(((d, a) for d, a in request if d != primary), key=lambda da: da[0] == 0)
            search = self._searches[request] = (
                any(d in self.space.gpu_dims for d, _ in request),
                primary,
                next(a for d, a in request if d == primary),
                tuple(rest),
            )
        return search
