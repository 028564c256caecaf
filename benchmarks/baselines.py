"""Yardsticks for the planner, computed on the same snapshot in the same run.

* :func:`lower_bound` — no plan can end with fewer nodes, whatever it moves:
  - per GPU pool (GPU pods keep their GPU model): at least the nodes pinned by an unmovable pod
    (protected, PDB at its limit, bare, training, local storage: they never move, so their nodes
    stay), and at least ceil(demand / per-node capacity) for GPUs, CPU, memory and pod slots, where
    demand is the pool's GPU pods plus the pods pinned there, and capacity is the largest node's
    allocatable minus its DaemonSet pods;
  - CPU-only pods need CPU nodes or the room those GPU nodes leave (on untainted pools): at least the
    CPU nodes pinned by unmovable pods, and at least ceil(residual demand / the largest node's
    capacity) more nodes, where residual demand is what does not fit in that GPU-node room.
    Two variants: *any placement* lets every CPU-only pod use GPU-node room (what a MostAllocated
    scheduler does); the *planner's rule* lets only CPU pods already on GPU nodes use it — pods from
    CPU nodes stay on CPU nodes so they never pin a GPU node.
* :func:`first_fit_decreasing` — a from-scratch repack: unmovable pods stay, every movable pod is
  taken off and re-placed largest first on the first node (pinned nodes first, then by name) that
  fits it, CPU nodes first for CPU pods. Moves nearly everything; a reference for packing quality.
* :func:`most_allocated_replay` — what "descheduler + kube-scheduler with MostAllocated scoring"
  achieves at best: movable pods are re-scheduled one by one in creation order onto the node that
  scores highest (mean requested share of cpu, memory and GPUs after placement) among feasible ones.

All three honour the pods' static constraints (selectors, affinity, taints, the GPU-model pin).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from rightsizer.core.binpack import Constraints, ResourceSpace, fits, pod_constraints
from rightsizer.core.budgets import Mobility, pod_disposition
from rightsizer.core.matching import hard_taints, selector_matches
from rightsizer.core.pools import PoolAssignment
from rightsizer.core.snapshot import (
    GPU_PRODUCT_LABEL,
    HOSTNAME_LABEL,
    Node,
    Pod,
    PodDisruptionBudget,
    Snapshot,
)


@dataclass(frozen=True)
class Placement:
    """Pods split by what a repack may do with them."""

    nodes: Sequence[Node]
    daemons: list[list[Pod]]  # per node: DaemonSet/mirror pods (stay, do not count as use)
    pinned: list[list[Pod]]  # per node: unmovable pods (stay, keep the node)
    movable: list[tuple[int, Pod]]  # (current node, pod)


def split(snapshot: Snapshot) -> Placement:
    index = {n.name: i for i, n in enumerate(snapshot.nodes)}
    daemons: list[list[Pod]] = [[] for _ in snapshot.nodes]
    pinned: list[list[Pod]] = [[] for _ in snapshot.nodes]
    movable: list[tuple[int, Pod]] = []
    by_namespace: dict[str, list[PodDisruptionBudget]] = {}
    for pdb in snapshot.pdbs:
        by_namespace.setdefault(pdb.namespace, []).append(pdb)
    for pod in snapshot.pods:
        i = index.get(pod.node_name or "")
        if i is None or pod.terminal:
            continue
        pdbs = [p for p in by_namespace.get(pod.namespace, ()) if selector_matches(p.selector, pod.labels)]
        d = pod_disposition(pod, policy=None, pdbs=pdbs, allow_training=False, allow_local_storage=False)
        if d.mobility is Mobility.STAYS:
            daemons[i].append(pod)
        elif d.mobility is Mobility.BLOCKS:
            pinned[i].append(pod)
        else:
            movable.append((i, pod))
    return Placement(snapshot.nodes, daemons, pinned, movable)


def _space(placement: Placement) -> ResourceSpace:
    names = {k for pods in (*placement.daemons, *placement.pinned) for p in pods for k in p.requests}
    names |= {k for _, p in placement.movable for k in p.requests}
    return ResourceSpace(names)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b > 0 else (0 if a <= 0 else 10**9)


@dataclass(frozen=True)
class Bound:
    total: int
    gpu_pools: dict[str, int]  # per GPU pool
    cpu_nodes: int  # nodes beyond the GPU pools' bound that CPU-only pods need at least


def lower_bound(placement: Placement, assignment: PoolAssignment, *, cpu_pods_on_gpu_nodes: bool) -> Bound:
    """The fewest nodes a plan can end with (see the module docstring).

    With ``cpu_pods_on_gpu_nodes`` False this is the bound under the planner's default rule: CPU-only
    pods from CPU nodes stay on CPU nodes (only those already on GPU nodes may use GPU-node room).
    """
    space = _space(placement)
    nodes = placement.nodes
    dims = len(space.names)
    pool_of = [assignment.node_pool.get(n.name, f"node:{n.name}") for n in nodes]
    gpu_pool = [n.gpus() > 0 for n in nodes]
    demand: dict[str, list[int]] = {}  # GPU pools: GPU pods + pods pinned there
    cpu_demand = [0] * dims  # CPU-only movable pods from CPU nodes + pods pinned on CPU nodes
    cpu_demand_on_gpu = [0] * dims  # CPU-only movable pods that are on GPU nodes now
    capacity: dict[str, list[int]] = {}  # best per-node capacity of each pool, DaemonSets deducted
    open_to_cpu_pods: dict[str, bool] = {}
    pinned_nodes: dict[str, int] = {}
    cpu_pinned = 0
    cpu_capacity = [0] * dims
    for i, node in enumerate(nodes):
        cap = space.capacity(node.allocatable)
        for pod in placement.daemons[i]:
            for d, a in space.request(pod.requests):
                cap[d] -= a
        if not gpu_pool[i]:
            cpu_capacity = [max(x, y) for x, y in zip(cpu_capacity, cap, strict=True)]
            cpu_pinned += bool(placement.pinned[i])
            for pod in placement.pinned[i]:
                _add(cpu_demand, space.request(pod.requests))
            continue
        pool = pool_of[i]
        capacity[pool] = [max(x, y) for x, y in zip(capacity.get(pool, cap), cap, strict=True)]
        open_to_cpu_pods[pool] = open_to_cpu_pods.get(pool, True) and not hard_taints(node.taints)
        pinned_nodes[pool] = pinned_nodes.get(pool, 0) + bool(placement.pinned[i])
        for pod in placement.pinned[i]:
            _add(demand.setdefault(pool, [0] * dims), space.request(pod.requests))
    for i, pod in placement.movable:
        if pod.gpus() > 0:
            _add(demand.setdefault(pool_of[i], [0] * dims), space.request(pod.requests))
        elif gpu_pool[i]:
            _add(cpu_demand_on_gpu, space.request(pod.requests))
        else:
            _add(cpu_demand, space.request(pod.requests))
    gpu_bound: dict[str, int] = {}
    spare = [0] * dims  # room the bound's GPU nodes leave for CPU-only pods
    biggest = list(cpu_capacity)  # the most one more node of any kind could hold
    for pool, cap in capacity.items():
        need = demand.get(pool, [0] * dims)
        count = max([pinned_nodes.get(pool, 0)] + [_ceil_div(n, c) for n, c in zip(need, cap, strict=True)])
        gpu_bound[pool] = count
        if open_to_cpu_pods[pool]:
            spare = [s + count * c - n for s, c, n in zip(spare, cap, need, strict=True)]
            biggest = [max(b, c) for b, c in zip(biggest, cap, strict=True)]
    if cpu_pods_on_gpu_nodes:
        total = [a + b for a, b in zip(cpu_demand, cpu_demand_on_gpu, strict=True)]
        residual = [max(0, n - s) for n, s in zip(total, spare, strict=True)]
        cpu_nodes = max([cpu_pinned] + [_ceil_div(r, b) for r, b in zip(residual, biggest, strict=True)])
    else:
        overflow = [max(0, n - s) for n, s in zip(cpu_demand_on_gpu, spare, strict=True)]
        cpu_nodes = max(
            [cpu_pinned]
            + [_ceil_div(n, c) for n, c in zip(cpu_demand, cpu_capacity, strict=True)]
            + [_ceil_div(n + o, b) for n, o, b in zip(cpu_demand, overflow, biggest, strict=True)]
        )
    return Bound(total=sum(gpu_bound.values()) + cpu_nodes, gpu_pools=gpu_bound, cpu_nodes=cpu_nodes)


def _add(vector: list[int], request: Iterable[tuple[int, int]]) -> None:
    for d, a in request:
        vector[d] += a


@dataclass(frozen=True)
class RepackResult:
    nodes_used: int
    pods_moved: int
    unplaced: int


def _constraints(placement: Placement, i: int, pod: Pod, keep_gpu_model: bool = True) -> Constraints:
    model = placement.nodes[i].gpu_model
    pins = [(GPU_PRODUCT_LABEL, model)] if keep_gpu_model and pod.gpus() > 0 and model else []
    return pod_constraints(pod, pins)


def _start(placement: Placement, space: ResourceSpace) -> tuple[list[list[int]], list[bool]]:
    free = []
    used = []
    for i, node in enumerate(placement.nodes):
        cap = space.capacity(node.allocatable)
        for pod in (*placement.daemons[i], *placement.pinned[i]):
            for d, a in space.request(pod.requests):
                cap[d] -= a
        free.append(cap)
        used.append(bool(placement.pinned[i]))
    return free, used


def _groups(placement: Placement) -> dict[tuple[object, ...], list[int]]:
    """Nodes that are interchangeable for static constraints: same labels (but hostname) and taints."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, node in enumerate(placement.nodes):
        if node.unschedulable:
            continue
        key = (
            tuple(sorted((k, v) for k, v in node.labels.items() if k != HOSTNAME_LABEL)),
            node.taints,
            tuple(sorted(node.allocatable.items())),
        )
        groups.setdefault(key, []).append(i)
    return groups


def first_fit_decreasing(
    placement: Placement, *, keep_gpu_model: bool = True, largest_first: bool = False
) -> RepackResult:
    """``largest_first``: nodes with more GPUs (then CPU) are filled first, as variable-size bin
    packing wants when node shapes differ; else by name."""
    space = _space(placement)
    free, used = _start(placement, space)
    groups = list(_groups(placement).values())
    nodes = placement.nodes

    def size(i: int) -> tuple[Decimal, Decimal]:
        return (
            (-nodes[i].gpus(), -nodes[i].allocatable.get("cpu", Decimal(0)))
            if largest_first
            else (
                Decimal(0),
                Decimal(0),
            )
        )

    order = sorted(range(len(nodes)), key=lambda i: (not used[i], *size(i), nodes[i].name))
    position = {n: p for p, n in enumerate(order)}
    for members in groups:
        members.sort(key=position.__getitem__)
    feasible: dict[Constraints, tuple[list[int], list[int]]] = {}
    moved = unplaced = 0
    pods = sorted(
        placement.movable,
        key=lambda ip: (
            -ip[1].gpus(),
            -ip[1].requests.get("cpu", Decimal(0)),
            -ip[1].requests.get("memory", Decimal(0)),
        ),
    )
    for i, pod in pods:
        request = space.request(pod.requests)
        constraints = _constraints(placement, i, pod, keep_gpu_model)
        plain_gpu = feasible.get(constraints)
        if plain_gpu is None:
            plain: list[int] = []
            gpu: list[int] = []
            for g, members in enumerate(groups):
                node = placement.nodes[members[0]]
                if constraints.admits(node.name, node.labels, node.taints):
                    (gpu if node.gpus() > 0 else plain).append(g)
            plain_gpu = feasible[constraints] = (plain, gpu)
        tiers = (plain_gpu[1],) if pod.gpus() > 0 else plain_gpu
        target = None
        for tier in tiers:
            best = None
            for g in tier:
                for n in groups[g]:
                    if fits(free[n], request):
                        if best is None or position[n] < position[best]:
                            best = n
                        break
            if best is not None:
                target = best
                break
        if target is None:
            unplaced += 1
            continue
        for d, a in request:
            free[target][d] -= a
        used[target] = True
        moved += target != i
    return RepackResult(sum(used), moved, unplaced)


def most_allocated_replay(placement: Placement) -> RepackResult:
    """MostAllocated: score = mean over cpu, memory (and GPUs on GPU nodes) of requested/allocatable.

    Nodes of one group share a shape, so the best node of a group after placement is the best one
    before it: each group keeps its nodes sorted by current score and the first that fits wins.
    """
    space = _space(placement)
    free, used = _start(placement, space)
    capacity = [space.capacity(n.allocatable) for n in placement.nodes]
    scored_dims = [
        d for d, name in enumerate(space.names) if name in ("cpu", "memory") or d in space.gpu_dims
    ]

    def score(n: int, extra: Iterable[tuple[int, int]] = ()) -> float:
        add = dict(extra)
        shares = [
            (capacity[n][d] - free[n][d] + add.get(d, 0)) / capacity[n][d]
            for d in scored_dims
            if capacity[n][d] > 0
        ]
        return sum(shares) / len(shares) if shares else 0.0

    groups = list(_groups(placement).values())
    ranked = [sorted((-score(n), n) for n in members) for members in groups]
    feasible: dict[Constraints, list[int]] = {}
    moved = unplaced = 0
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, pod in sorted(placement.movable, key=lambda ip: (ip[1].created or epoch, ip[1].key)):
        request = space.request(pod.requests)
        constraints = _constraints(placement, i, pod)
        admitted = feasible.get(constraints)
        if admitted is None:
            admitted = []
            for g, members in enumerate(groups):
                node = placement.nodes[members[0]]
                if constraints.admits(node.name, node.labels, node.taints):
                    admitted.append(g)
            feasible[constraints] = admitted
        best: tuple[float, int, int] | None = None
        for g in admitted:
            for neg, n in ranked[g]:
                if fits(free[n], request):
                    after = score(n, request)
                    if best is None or after > best[0]:
                        best = (after, n, g)
                    break
                del neg
        if best is None:
            unplaced += 1
            continue
        _, target, g = best
        ranked[g].remove((-score(target), target))
        for d, a in request:
            free[target][d] -= a
        insort(ranked[g], (-score(target), target))
        used[target] = True
        moved += target != i
    return RepackResult(sum(used), moved, unplaced)
