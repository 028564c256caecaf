"""How many more nodes each pool may lose in one plan, and how many pods of a PodDisruptionBudget
one node's drain may evict.

Every consolidation method books its disruptions here: a node counts against its pool's disruption
budgets, minNodes and maxNodes, so a later method sees what earlier ones already took. PDBs are
counted per drained node, not per plan: the executor drains one node at a time and ends a drain only
once the evicted pods' replacements are available, so the next node of the plan finds the PDB's
``disruptionsAllowed`` whole again (when it does not, the executor's live re-check and the Eviction
API's refusal keep the node). One ledger, apart from the methods, so that the counting has a single
home whatever method asks.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from rightsizer.core.budgets import allowed_disruptions, is_disrupting
from rightsizer.core.matching import selector_matches
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget


class DisruptionLedger:
    """Budgets and node-count limits of one pass, what the plan has used of them so far, and the PDBs
    over each pod."""

    def __init__(
        self,
        nodes: Sequence[Node],
        pools: Sequence[PoolPolicy | None],
        pdbs: Sequence[PodDisruptionBudget],
        pods: Iterable[Pod],
        now: datetime,
    ) -> None:
        """``pools`` is each node's pool (None: outside every pool); ``pods`` are the bound pods."""
        self.now = now
        self.pdbs_of = _match_pdbs(pdbs, pods)
        self._pdb_allowed = {p.key: p.disruptions_allowed for p in pdbs}
        self._size: Counter[str] = Counter()
        self._disrupting: Counter[str] = Counter()
        for node, pool in zip(nodes, pools, strict=True):
            if pool is not None:
                self._size[pool.name] += 1
                if is_disrupting(node):
                    self._disrupting[pool.name] += 1
        self._planned: Counter[str] = Counter()
        self._removed: Counter[str] = Counter()
        self._launched: Counter[str] = Counter()
        self._allowed: dict[tuple[str, str], int] = {}

    def fork(self) -> DisruptionLedger:
        """A ledger with the same limits and nothing of this one's bookings after the fork."""
        other = copy.copy(self)
        other._planned = Counter(self._planned)
        other._removed = Counter(self._removed)
        other._launched = Counter(self._launched)
        return other

    def budget_block(self, pool: PoolPolicy, reason: str) -> str | None:
        key = (pool.name, reason)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = allowed_disruptions(
                pool.budgets, self._size[pool.name], self._disrupting[pool.name], self.now, reason
            )
            self._allowed[key] = allowed
        if self._planned[pool.name] >= allowed:
            planned, disrupting = self._planned[pool.name], self._disrupting[pool.name]
            return (
                f"disruption budget of pool {pool.name} allows {allowed} node(s) now "
                f"({planned} planned, {disrupting} already disrupting)"
            )
        return None

    def min_nodes_block(self, pool: PoolPolicy) -> str | None:
        if self._size[pool.name] - self._removed[pool.name] - 1 < pool.min_nodes:
            return f"pool {pool.name} keeps minNodes={pool.min_nodes}"
        return None

    def max_nodes_block(self, pool: PoolPolicy) -> str | None:
        """Why the pool has no room to launch one more (replacement) node, or None."""
        if pool.max_nodes is None:
            return None
        current = self._size[pool.name] - self._removed[pool.name] + self._launched[pool.name]
        if current + 1 > pool.max_nodes:
            return f"pool {pool.name} is at maxNodes={pool.max_nodes}; no room to launch a replacement"
        return None

    def pdb_block(self, pods: Iterable[Pod]) -> tuple[Pod, str] | None:
        """The first pod, and why, when evicting ``pods`` (one node's) would take more of a PDB at once
        than its ``disruptionsAllowed``; None when every PDB allows it. Other nodes' drains do not
        count: each starts after the previous one's replacements are available."""
        need: Counter[str] = Counter()
        first: dict[str, Pod] = {}
        for pod in pods:
            for pdb in self.pdbs_of.get(pod.key, ()):
                need[pdb.key] += 1
                first.setdefault(pdb.key, pod)
        for key, count in need.items():
            allowed = self._pdb_allowed[key]
            if count > allowed:
                why = f"PDB {key} allows {allowed} disruption(s) at a time; this node's pods need {count}"
                return first[key], why
        return None

    def commit(self, pool: PoolPolicy) -> None:
        """Book one planned disruption in ``pool``."""
        self._planned[pool.name] += 1

    def count_removal(self, pool: PoolPolicy) -> None:
        self._removed[pool.name] += 1

    def count_launch(self, pool: PoolPolicy) -> None:
        self._launched[pool.name] += 1


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
