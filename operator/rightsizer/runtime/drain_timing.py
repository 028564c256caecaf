"""When a node's step of the plan may run: an empty node only once it has been empty for the pool's
``scaleDownAfter``, a node whose drain failed only once its back-off ends (see core.drain_backoff).

Both need what earlier passes saw, so they are remembered here between passes; apart from the pass
so that the one question "is this step due?" has its own home and its own memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rightsizer.adapters.cluster_snapshot import ClusterState
from rightsizer.core import drain_backoff
from rightsizer.core.drain_backoff import BackoffPolicy, NodeFailures
from rightsizer.core.snapshot import Node
from rightsizer.runtime.drain_steps import NodeStep

log = logging.getLogger(__name__)


@dataclass
class DrainTiming:
    # Node name → (its uid, since when it has been empty). The uid matters: a node that goes and
    # comes back under the same name (kwok, some providers) is a new node, not empty for long already.
    _empty_since: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    _failed_drains: dict[str, NodeFailures] = field(default_factory=dict)

    def observe(
        self, state: ClusterState, members: Sequence[Node], now: datetime, backoff: BackoffPolicy
    ) -> None:
        """Note which of the pool's nodes are empty now, and forget back-offs that ended or whose
        node is gone."""
        busy = {
            p.node_name
            for p in state.snapshot.pods
            if p.node_name and not p.terminal and not p.is_daemon and not p.is_mirror
        }
        existing = {n.name: n.uid for n in state.snapshot.nodes}
        names = {n.name for n in members}
        for name, (uid, _) in list(self._empty_since.items()):
            # Gone, replaced by a namesake, or busy again: whatever it was before no longer counts.
            if existing.get(name) != uid or (name in names and name in busy):
                del self._empty_since[name]
        for node in members:
            if node.name not in busy:
                self._empty_since.setdefault(node.name, (node.uid, now))
        self._failed_drains = drain_backoff.prune(
            self._failed_drains, {n.name for n in state.snapshot.nodes}, now, backoff
        )

    def due(
        self, steps: list[NodeStep], pool: str, scale_down_after: timedelta, now: datetime
    ) -> list[NodeStep]:
        """This pool's steps; an empty node only once it has been empty for scaleDownAfter; none for a
        node whose drain failed recently."""
        due = []
        for step in steps:
            if step.pool != pool:
                continue
            cooling = drain_backoff.cooling_down(self._failed_drains, step.node, now)
            if cooling is not None:
                log.debug("not draining %s: %s", step.node, drain_backoff.describe(cooling, now))
                continue
            if not step.pods:
                seen = self._empty_since.get(step.node)
                if seen is None or now - seen[1] < scale_down_after:
                    continue
            due.append(step)
        return due

    def cooling(self, node: str, now: datetime) -> bool:
        """Is ``node`` in the back-off of a failed drain (kept for now, whatever the plan says)?"""
        return drain_backoff.cooling_down(self._failed_drains, node, now) is not None

    def failed(self, node: str, now: datetime, backoff: BackoffPolicy) -> str:
        """Record a failed drain of ``node``; says when it may be tried again."""
        self._failed_drains = drain_backoff.record_failure(self._failed_drains, node, now, backoff)
        return drain_backoff.describe(self._failed_drains[node], now)
