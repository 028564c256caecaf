"""Greedy single-node consolidation on requests: the method of Karpenter's single-node consolidation.

One node at a time, cheapest to disrupt first (fewest pods, then fewest GPUs requested): the node
goes when every pod on it fits on the other remaining nodes (each on the most-allocated node that
fits, constraints and the GPU-model pin honoured); its pods then run there. Passes repeat until one
removes nothing. Unmovable pods pin their nodes, as in :mod:`benchmarks.baselines`. Karpenter
re-sorts its candidates after every removal; re-sorting once per pass gives the same fixed point up
to ties and keeps the baseline fast enough to run beside the planner.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from benchmarks.baselines import Placement, _constraints, _space
from rightsizer.core.binpack import Constraints, Simulation
from rightsizer.core.snapshot import Pod


@dataclass(frozen=True)
class GreedyResult:
    nodes_used: int
    pods_moved: int
    passes: int


def greedy_single_node(placement: Placement, *, keep_gpu_model: bool = True) -> GreedyResult:
    space = _space(placement)
    nodes = placement.nodes
    pods = [(i, p, _constraints(placement, i, p, keep_gpu_model)) for i, p in placement.movable]
    request = {p.key: space.request(p.requests) for _, p, _ in pods}
    sim = Simulation(
        nodes,
        space,
        constraints=[c for _, _, c in pods],
        targetable=[not n.unschedulable for n in nodes],
        rank=list(range(len(nodes))),
    )
    for i in range(len(nodes)):
        for pod in (*placement.daemons[i], *placement.pinned[i]):
            sim.reserve(i, space.request(pod.requests), pod)
    load: list[list[tuple[Pod, Constraints]]] = [[] for _ in nodes]
    for i, pod, constraints in pods:
        sim.reserve(i, request[pod.key], pod)
        load[i].append((pod, constraints))
    origin = {p.key: i for i, p, _ in pods}
    where = dict(origin)
    alive = [not placement.pinned[i] and not n.unschedulable for i, n in enumerate(nodes)]
    removed = [False] * len(nodes)
    passes = 0
    while True:
        passes += 1
        progress = False

        def cost(i: int) -> tuple[int, Decimal, str]:
            gpus = sum((p.gpus() for p, _ in load[i]), Decimal(0))
            return (len(load[i]), gpus, nodes[i].name)

        for i in sorted((i for i in range(len(nodes)) if alive[i]), key=cost):
            moves: list[tuple[Pod, Constraints, int]] = []
            ok = True
            for pod, constraints in sorted(load[i], key=lambda pc: (-pc[0].gpus(), pc[0].key)):
                target = sim.find(pod, request[pod.key], constraints, exclude=i)
                if target is None:
                    ok = False
                    break
                sim.release(i, request[pod.key], pod)
                sim.reserve(target, request[pod.key], pod)
                moves.append((pod, constraints, target))
            if not ok:
                for pod, _, target in reversed(moves):
                    sim.release(target, request[pod.key], pod)
                    sim.reserve(i, request[pod.key], pod)
                continue
            for pod, constraints, target in moves:
                load[target].append((pod, constraints))
                where[pod.key] = target
            load[i] = []
            alive[i] = False
            removed[i] = True
            sim.remove_node(i)
            progress = True
        if not progress:
            break
    moved = sum(1 for key, i in where.items() if i != origin[key])
    return GreedyResult(len(nodes) - sum(removed), moved, passes)
