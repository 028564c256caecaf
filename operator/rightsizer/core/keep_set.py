"""Multi-node consolidation: which nodes to keep, chosen for the whole pool at once.

Draining one node at a time (single-node consolidation) lets each node's pods land wherever there is
room, often on nodes that would be better emptied next, and leaves the free room scattered in pieces
no later pod fits. Deciding first which nodes stay avoids both:

* nodes that stay anyway (unmovable pods, outside every pool, not yet due) come first; among the
  candidates, the largest nodes (GPUs, then CPU, then memory) and, among equal ones, the fullest are
  the best to keep: fewer nodes hold the pods, and fewer pods move;
* keep the fewest of them whose free room, with that of the nodes that stay anyway, covers in every
  resource what the pods of all other candidates request;
* empty the others into the kept nodes only, hardest first (the node whose largest pod is largest,
  the way first-fit-decreasing packs), so big pods find room before small ones fill it.

A node whose pods do not all fit (room is fragmented across nodes, or constraints rule the kept
nodes out) simply stays and offers its room to the rest. Pure arithmetic on integer vectors; the
caller simulates each drain and checks budgets and PDBs as for any drain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Vector = Sequence[int]


@dataclass(frozen=True, slots=True)
class KeepSet:
    keep: frozenset[int]  # candidates that stay and receive pods
    drain_order: tuple[int, ...]  # the other candidates, in the order to empty them

    def describe(self, staying: int) -> str:
        return (
            f"multi-node consolidation: {len(self.drain_order)} node(s) emptied into "
            f"{len(self.keep) + staying} that stay"
        )


def choose_keep_set(
    candidates: Sequence[int],
    *,
    size: Callable[[int], tuple[int, ...]],
    used: Callable[[int], tuple[int, ...]],
    free: Callable[[int], Vector],
    load: Callable[[int], Vector],
    staying_free: Vector,
    hardness: Callable[[int], tuple[object, ...]],
    name: Callable[[int], str],
) -> KeepSet:
    """``size`` and ``used``: a candidate's allocatable and what is requested on it, most telling
    resource first (GPUs, CPU, memory). ``free`` and ``load``: its free room now and what its movable
    pods request, as resource vectors; ``staying_free``: the free room of the nodes that stay anyway.
    ``hardness`` sorts the nodes to empty, hardest first (smallest key first)."""
    preference = sorted(
        candidates,
        key=lambda i: (*(-c for c in size(i)), *(-u for u in used(i)), name(i)),
    )
    dims = len(staying_free)
    room = list(staying_free)
    demand = [0] * dims
    for i in preference:
        for d, amount in enumerate(load(i)):
            demand[d] += amount
    kept = 0
    # Keep nodes in order of preference until the kept room covers the demand of those not kept.
    while kept < len(preference) and any(room[d] < demand[d] for d in range(dims)):
        i = preference[kept]
        kept += 1
        for d, amount in enumerate(free(i)):
            room[d] += amount
        for d, amount in enumerate(load(i)):
            demand[d] -= amount
    keep = frozenset(preference[:kept])
    order = sorted(preference[kept:], key=lambda i: (*hardness(i), name(i)))
    return KeepSet(keep=keep, drain_order=tuple(order))
