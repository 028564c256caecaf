"""Multi-node consolidation: empty many nodes at once into the ones chosen to stay.

Runs before single-node consolidation (see :mod:`~rightsizer.core.consolidation`). Which nodes stay
is :func:`~rightsizer.core.keep_set.choose_keep_set`; here the pods of all the others are packed
into them the way first-fit-decreasing packs, largest pod first across every node to empty (node
by node, small pods of early nodes would take the room the big pods of later ones need). A node one
of whose pods fits nowhere stays, its pods go back, and it offers its own room to the rest. The
packing is only a proposal: the nodes are then drained one by one by the same drain as every other
method, with the same budget, PDB and placement checks, each pod going to its proposed node when it
still fits there and to the best node that stays otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from rightsizer.core.binpack import CPU, MEMORY, Request, fits
from rightsizer.core.consolidation_state import ConsolidationState
from rightsizer.core.keep_set import KeepSet, choose_keep_set
from rightsizer.core.snapshot import Pod


class MultiNodeMethod(ConsolidationState):
    """The multi-node method on a consolidation pass's working state."""

    def drain(
        self,
        candidates: list[int],
        *,
        keep: KeepSet | None = None,
        staying: int = 0,
        avoid: frozenset[int] = frozenset(),
        planned: Mapping[str, int] | None = None,
    ) -> frozenset[int]:
        raise NotImplementedError  # the drain every method shares, in the pass itself

    def may_use_gpu_nodes(self, pod: Pod) -> bool:
        raise NotImplementedError

    def fits_on(self, pod: Pod, request: Request, n: int) -> bool:
        """Does the pod still fit on node n as the simulation stands (n not removed)?"""
        return (
            self.sim.node_class[n] >= 0
            and fits(self.sim.free[n], request)
            and self.sim.neighbours_allow(pod, n)
        )

    def consolidate_many(self, candidates: list[int], gpu_tier: bool) -> frozenset[int]:
        """Choose the nodes of the tier that stay, pack the others' pods into them, drain those
        nodes; returns the nodes a budget holds back for a later plan."""
        loaded = [i for i in candidates if self.load[i] and i not in self.removed]
        if len(loaded) < 2:
            return frozenset()
        chosen = set(loaded)
        dims = len(self.space.names)
        staying_free = [0] * dims
        staying = 0
        for n in range(len(self.nodes)):
            if n in chosen or self.sim.node_class[n] < 0 or (self.node_gpus[n] > 0) != gpu_tier:
                continue
            staying += 1
            for d, amount in enumerate(self.sim.free[n]):
                staying_free[d] += amount
        gpu_dims = sorted(self.space.gpu_dims)
        cpu, memory = self.space.index[CPU], self.space.index[MEMORY]

        def shape(vector: list[int]) -> tuple[int, ...]:
            return (sum(vector[d] for d in gpu_dims), vector[cpu], vector[memory])

        def load(i: int) -> list[int]:
            total = [0] * dims
            for pod in self.load[i]:
                for d, amount in self.request[pod.key]:
                    total[d] += amount
            return total

        def hardness(i: int) -> tuple[object, ...]:
            largest = min(self.load[i], key=self.size_key)
            return (*self.size_key(largest)[:3], *(-x for x in shape(load(i))))

        keep = choose_keep_set(
            loaded,
            size=lambda i: shape(self.sim.capacity[i]),
            used=lambda i: shape(
                [c - f for c, f in zip(self.sim.capacity[i], self.sim.free[i], strict=True)]
            ),
            free=lambda i: self.sim.free[i],
            load=load,
            staying_free=staying_free,
            hardness=hardness,
            name=lambda i: self.nodes[i].name,
        )
        planned, stay = self._pack(keep)
        keep = KeepSet(keep=keep.keep | stay, drain_order=tuple(i for i in keep.drain_order if i not in stay))
        return self.drain(list(keep.drain_order), keep=keep, staying=staying, planned=planned)

    def _pack(self, keep: KeepSet) -> tuple[dict[str, int], frozenset[int]]:
        """Largest pod first across all nodes to empty, each onto the fullest node that stays and
        fits it. Returns the proposed target of each pod and the nodes that must stay after all.
        The simulation is left as it was."""
        dropping = set(keep.drain_order)
        self.sim.suspend(dropping)  # pods go only to nodes that stay
        pods = sorted(
            ((p, i) for i in keep.drain_order for p in self.load[i]), key=lambda pi: self.size_key(pi[0])
        )
        placed: dict[int, list[tuple[Pod, int]]] = {}
        failed: set[int] = set()
        for pod, i in pods:
            if i in failed:
                continue
            request = self.request[pod.key]
            target = self.sim.find(
                pod,
                request,
                self.constraints[pod.key],
                exclude=i,
                allow_gpu_nodes=self.may_use_gpu_nodes(pod),
            )
            if target is None:
                failed.add(i)
                for moved, where in reversed(placed.pop(i, [])):
                    self.sim.release(where, self.request[moved.key], moved)
                    self.sim.reserve(i, self.request[moved.key], moved)
                dropping.discard(i)  # stays, and offers its room to the rest
                self.sim.resume((i,))
                continue
            self.sim.release(i, request, pod)
            self.sim.reserve(target, request, pod)
            placed.setdefault(i, []).append((pod, target))
        proposal: dict[str, int] = {}
        for i, moves in placed.items():
            for pod, where in reversed(moves):
                self.sim.release(where, self.request[pod.key], pod)
                self.sim.reserve(i, self.request[pod.key], pod)
                proposal[pod.key] = where
        self.sim.resume(dropping)
        return proposal, frozenset(failed)
