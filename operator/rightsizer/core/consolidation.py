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

This module holds the methods in their order; the state they share (and why a node is no candidate)
is :mod:`~rightsizer.core.consolidation_state`, budgets and PDBs are counted in
:mod:`~rightsizer.core.disruption_ledger`, and :mod:`~rightsizer.core.consolidation_outcome` says
what was decided.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal

from rightsizer.core.binpack import CPU, MEMORY
from rightsizer.core.budgets import REASON_EMPTY, REASON_UNDERUTILIZED, PodPolicy
from rightsizer.core.consolidation_multi import MultiNodeMethod
from rightsizer.core.consolidation_outcome import build_actions, explain
from rightsizer.core.consolidation_types import Outcome, PlannerOptions, Skip
from rightsizer.core.keep_set import KeepSet
from rightsizer.core.node_replacement import cheapest_replacement
from rightsizer.core.pools import WHEN_EMPTY, PoolAssignment
from rightsizer.core.quantity import format_cpu
from rightsizer.core.snapshot import Pod, Snapshot, is_gpu_resource


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


class _Run(MultiNodeMethod):
    """The consolidation methods, run in order on the working state of one pass."""

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
            block = self.ledger.min_nodes_block(pool) or self.ledger.budget_block(pool, REASON_EMPTY)
            if block:
                self.node_reason[i] = block
                continue
            reason = "empty: no pods to move" + (
                f" ({len(self.stays[i])} DaemonSet/static pods)" if self.stays[i] else ""
            )
            self.ledger.commit(pool)
            self.disruptions.append((i, reason))
            self._remove(i)

    def drain(
        self,
        candidates: list[int],
        *,
        keep: KeepSet | None = None,
        staying: int = 0,
        avoid: frozenset[int] = frozenset(),
        planned: Mapping[str, int] | None = None,
    ) -> frozenset[int]:
        """Empty candidates one by one. With ``keep``: in its order and only into the nodes that stay;
        returns the nodes a budget holds back for now, which later moves must not fill either.
        ``avoid``: nodes no pod may move to; ``planned``: targets chosen ahead for the pods."""
        # Utilisation as it is now: earlier moves may have filled some candidates.
        utilisation = {i: self._current_utilisation(i) for i in candidates}
        dropping: set[int] = set(keep.drain_order) if keep is not None else set()
        dropping |= avoid
        self.sim.suspend(dropping)  # no pod moves onto a node being emptied

        def held(i: int) -> None:
            """Node i stays after all: a target from now on."""
            dropping.discard(i)
            self.sim.resume((i,))

        def order(i: int) -> tuple[object, ...]:
            return (
                not self.node_idle(i),
                utilisation[i],
                len(self.load[i]),
                sum((self.gpus(p) for p in self.load[i]), Decimal(0)),
                self.nodes[i].name,
            )

        for i in keep.drain_order if keep is not None else sorted(candidates, key=order):
            pool = self.pool[i]
            assert pool is not None
            if pool.consolidation_policy == WHEN_EMPTY:
                self.node_reason[i] = f"pool {pool.name} consolidates only empty nodes (WhenEmpty)"
                held(i)
                continue
            if block := self.ledger.min_nodes_block(pool):
                self.node_reason[i] = block
                held(i)
                continue
            if block := self.ledger.budget_block(pool, REASON_UNDERUTILIZED):
                self.node_reason[i] = block  # emptied by a later plan: not filled by this one
                continue
            # Guests moved here earlier in this plan are evicted from their own nodes, not this one.
            first_moves = [p for p in self.load[i] if p.key not in self.location]
            if (pdb := self.ledger.pdb_block(first_moves)) is not None:
                pod, why = pdb
                self.node_reason[i] = f"pod {pod.key}: {why}"
                self.skipped.append(Skip(self.nodes[i].name, pod.key, why))
                held(i)  # its own pods exceed the PDB, whatever else goes first: it stays, a target
                continue
            placed, stuck = self._try_drain(i, planned)
            if stuck is not None:
                held(i)
                self.node_reason[i] = (
                    f"pod {stuck.key} ({describe(stuck.requests)}) fits on no remaining node"
                    + (
                        " without a GPU"
                        if not self.may_use_gpu_nodes(stuck) and self.gpus(stuck) <= 0
                        else ""
                    )
                )
                continue
            self.ledger.commit(pool)
            idle = ", GPUs idle" if self.node_idle(i) else ""
            reason = (
                f"underutilised ({utilisation[i] * 100:.0f}% requested{idle}): "
                f"{len(self.movable[i])} pod(s) fit on other nodes"
                + (f" ({keep.describe(staying)})" if keep is not None else "")
            )
            for pod, target in placed:
                self.location[pod.key] = target
                self.load[target].append(pod)
                self.received[target] = True
            self.load[i] = []
            self.disruptions.append((i, reason))
            self._remove(i)
        self.sim.resume(dropping)
        return frozenset(n for n in dropping if n not in self.removed)

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

    def _try_drain(
        self, i: int, planned: Mapping[str, int] | None = None
    ) -> tuple[list[tuple[Pod, int]], Pod | None]:
        """Move node i's pods (largest first) onto other nodes, or nothing when one fits nowhere.
        ``planned`` targets are taken when they still fit, else the best node that does."""
        placed: list[tuple[Pod, int]] = []
        for pod in sorted(self.load[i], key=self.size_key):
            request = self.request[pod.key]
            target = planned.get(pod.key) if planned else None
            if target is None or not self.fits_on(pod, request, target):
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
            choice = cheapest_replacement(self, i, pool)
            if choice is None:
                continue
            block = self.ledger.budget_block(pool, REASON_UNDERUTILIZED) or self.ledger.max_nodes_block(pool)
            if block is None and (pdb := self.ledger.pdb_block(self.movable[i])) is not None:
                block = f"pod {pdb[0].key}: {pdb[1]}"
            if block:
                self.node_reason[i] = f"could be replaced by {choice.instance_type}, but {block}"
                continue
            self.ledger.commit(pool)
            saving = self.price[i] - choice.price_per_node_hour
            reason = (
                f"pods fit on a cheaper {choice.instance_type} "
                f"(${choice.price_per_node_hour}/h instead of ${self.price[i]}/h, saves ${saving}/h)"
            )
            self.ledger.count_launch(pool)
            self.replaced[i] = choice
            self.disruptions.append((i, reason))
            self._remove(i)

    def _remove(self, i: int) -> None:
        self.removed.add(i)
        pool = self.pool[i]
        if pool is not None:
            self.ledger.count_removal(pool)
        self.sim.remove_node(i)

    def run(self, *, multi_node: bool = False) -> Outcome:
        self.place_pending()
        eligible: list[int] = []
        for i in range(len(self.nodes)):
            why = self.not_candidate(i)
            if why is None:
                eligible.append(i)
            else:
                self.node_reason[i] = why
        # GPU nodes first: that is where the money is, and CPU pods evicted from them may still use
        # empty CPU nodes, which are only removed afterwards if nothing landed on them.
        for gpu_tier in (True, False):
            tier = [i for i in eligible if (self.node_gpus[i] > 0) == gpu_tier]
            self.remove_empty([i for i in tier if not self.load[i]])
            held = self.consolidate_many([i for i in tier if self.load[i]], gpu_tier) if multi_node else None
            self.drain([i for i in tier if self.load[i] and i not in self.removed], avoid=held or frozenset())
        if self.options.replacement:
            self.replace([i for i in eligible if i not in self.removed])
        kept, recommendations = explain(self)
        return Outcome(
            actions=tuple(build_actions(self)),
            skipped=(*dict.fromkeys(self.skipped), *kept),
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
    covered: Collection[str] = (),
) -> str | None:
    """Why the pods still on ``node`` would not all fit on the other nodes of ``snapshot`` (the live
    cluster right before an eviction, Pending replacements placed first), or None when they do.
    ``covered`` pods need no room: a surge replica already running elsewhere is theirs, and counting
    them again would ask for their room twice."""
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
    run.load[i] = [p for p in run.load[i] if p.key not in covered]
    _, stuck = run._try_drain(i)
    if stuck is None:
        return None
    return f"pod {stuck.key} ({describe(stuck.requests)}) no longer fits on any other node"


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
    """Run the consolidation methods in order on a snapshot and return what they decided.

    Two complete passes from the same working state: single-node consolidation alone, and
    multi-node consolidation before it. The plan that leaves fewer nodes (then costs less, then moves
    fewer pods) wins; on a tie the single-node plan. Both book every disruption in their own ledger."""
    start = _Run(
        snapshot,
        assignment,
        now=now,
        policies=policies or {},
        activity=activity or {},
        candidate_since=candidate_since or {},
        options=options or PlannerOptions(),
    )
    runs = []
    for multi_node in (False, True):
        run = start if multi_node else start.fork()
        outcome = run.run(multi_node=multi_node)
        runs.append((_worth(run, outcome), multi_node, outcome))
    return min(runs, key=lambda r: (r[0], r[1]))[2]


def _worth(run: _Run, outcome: Outcome) -> tuple[int, Decimal, int]:
    """Nodes left, cost per hour after, pods moved: what a plan is compared on."""
    cost = sum((run.price[i] for i in range(len(run.nodes)) if i not in run.removed), Decimal(0)) + sum(
        (r.price_per_node_hour for r in run.replaced.values()), Decimal(0)
    )
    moved = sum(1 for a in outcome.actions if a.type == "evict")
    return len(run.nodes) - len(outcome.removed), cost, moved
