"""Make-before-break inside a drain: raise the owners that would lose Ready replicas, wait until the
extra replicas are available, and restore the counts afterwards (see :mod:`rightsizer.core.surge`).

The order keeps every step recoverable: the owners are listed in the node's drain intent *before*
any is raised, and each owner carries its own record (count to restore, drained node) in the same
write that raises it. Every way out of a drain (done, rolled back, timed out, node gone, recovery
after a restart) restores the owners the intent lists; restoring is idempotent, and only touches an
owner whose record names this node.

When to restore differs by kind. A Deployment is restored right after the evictions: its surge pods
already serve in place of the evicted ones, and scaling down drops the evicted pods' replacements
first (the ReplicaSet deletes Pending and not-Ready pods before Ready ones). A StatefulSet recreates
the evicted pod under the same name and scaling down removes the highest ordinals, the surge pods,
so it is restored only once the replacements are Running and Ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from kubernetes.client.rest import ApiException

from rightsizer.adapters.replica_surge import OwnerState, SurgeConflict
from rightsizer.core.budgets import PodPolicy
from rightsizer.core.errors import RightsizerError
from rightsizer.core.snapshot import Node, Pod
from rightsizer.core.surge import MakeBeforeBreak, Owner, Surge, SurgeRecord, plan_surges
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent
from rightsizer.runtime.drain_steps import Result

log = logging.getLogger(__name__)

RESTORED_AFTER_EVICTION = frozenset({"Deployment"})


class SurgeEdge(Protocol):
    """What make-before-break needs from the API server (KubeSurges, or a fake in tests)."""

    def owner_of(self, pod: Pod) -> Owner | None: ...
    def read(self, owner: Owner) -> OwnerState | None: ...
    def raise_(self, owner: Owner, node: str, surge: int) -> SurgeRecord | None: ...
    def restore(self, owner: Owner, node: str) -> int | None: ...
    def raised(self) -> Sequence[tuple[Owner, SurgeRecord]]: ...


class NodeEdge(Protocol):
    def node(self, name: str) -> Node | None: ...
    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None: ...
    def event(self, node: str, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Surged:
    """The owners raised (their extra replicas available), and the pods to evict that need no room
    of their own: those of Deployments, whose surge replicas serve in their place and whose
    replacements go again when the count is restored. A StatefulSet's evicted pod comes back under
    its name beside the surge replica, so it needs its room like any other pod."""

    owners: tuple[Owner, ...] = ()
    covered: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SurgeFailed:
    """Why the drain must stop before evicting; ``rollback`` False when it is no longer this
    process's drain (taken over, or the node is gone), so it leaves the node alone."""

    result: Result
    reason: str
    message: str
    rollback: bool = True
    owners: tuple[Owner, ...] = ()


@dataclass
class SurgeSweep:
    """When to look for owners left raised (:meth:`SurgeSteps.sweep`): one cluster-wide list at most
    every ``every``. They cost replicas, not safety, so a list refused only delays the next look."""

    every: timedelta = timedelta(minutes=5)
    last: datetime | None = None

    def __call__(self, steps: SurgeSteps | None, busy: Collection[str], now: datetime) -> list[str]:
        if steps is None or (self.last is not None and now - self.last < self.every):
            return []
        self.last = now
        try:
            return steps.sweep(busy)
        except (ApiException, RightsizerError) as exc:
            log.warning("owners left raised by drains cannot be listed: %s", exc)
            return []


@dataclass
class SurgeSteps:
    surges: SurgeEdge
    nodes: NodeEdge
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    timeout: timedelta
    poll_seconds: float

    def start(
        self,
        node: str,
        setting: MakeBeforeBreak,
        evicting: Sequence[Pod],
        policies: Mapping[str, PodPolicy],
        keep: Callable[[], Intent | None],
    ) -> Surged | SurgeFailed:
        """Raise the owners that need it and wait, bounded, until their extra replicas are available."""
        if setting is MakeBeforeBreak.NEVER:
            return Surged()
        owners = {p.key: self.surges.owner_of(p) for p in evicting if p.ready_since is not None}
        planned = plan_surges(evicting, owners, policies, setting)
        if not planned:
            return Surged()
        intent = keep()
        if intent is None:
            return self._lost(node, ())
        listed = tuple(s.owner for s in planned)
        # Intent first: whoever finds this node next knows which owners to restore.
        self.nodes.annotate(node, {INTENT_ANNOTATION: replace(intent, surges=listed).to_json()})
        raised: list[tuple[Surge, SurgeRecord]] = []
        for surge in planned:
            try:
                record = self.surges.raise_(surge.owner, node, surge.count)
            except SurgeConflict as exc:
                return SurgeFailed(
                    Result.BLOCKED, "DrainSurgeBlocked", f"{exc}; node {node} kept", owners=listed
                )
            if record is None:
                continue  # the owner is gone: it has no capacity to keep
            if record.node != node:
                message = (
                    f"{surge.owner.key} is raised already for the drain of node {record.node}; "
                    f"nothing evicted, node {node} kept"
                )
                return SurgeFailed(Result.BLOCKED, "DrainSurgeBlocked", message, owners=listed)
            raised.append((surge, record))
            self.nodes.event(
                node, "Normal", "DrainSurge", f"{surge.reason} (to {record.raised} until drained)"
            )
        return self._wait(node, raised, keep, listed)

    def _wait(
        self,
        node: str,
        raised: Sequence[tuple[Surge, SurgeRecord]],
        keep: Callable[[], Intent | None],
        listed: tuple[Owner, ...],
    ) -> Surged | SurgeFailed:
        deadline = self.clock() + self.timeout
        while True:
            if self.nodes.node(node) is None or keep() is None:
                return self._lost(node, listed)
            short = []
            for surge, record in raised:
                state = self.surges.read(surge.owner)
                if state is None:
                    continue
                wanted = (state.record or record).available_wanted
                if state.available < wanted:
                    short.append(f"{surge.owner.key}: {state.available}/{wanted} available")
            if not short:
                covered = (p for s, _ in raised if s.owner.kind in RESTORED_AFTER_EVICTION for p in s.pods)
                return Surged(tuple(s.owner for s, _ in raised), frozenset(covered))
            if self.clock() >= deadline:
                limit = int(self.timeout.total_seconds())
                message = (
                    f"surge replicas not available within {limit}s ({'; '.join(short)}); replicas "
                    f"restored, nothing evicted, node {node} kept"
                )
                return SurgeFailed(Result.TIMED_OUT, "DrainSurgeTimedOut", message, owners=listed)
            self.sleep(self.poll_seconds)

    def _lost(self, node: str, owners: tuple[Owner, ...]) -> SurgeFailed:
        message = f"drain of {node} was taken over by another operator process, or the node went"
        return SurgeFailed(Result.TAKEN_OVER, "DrainTakenOver", message, rollback=False, owners=owners)

    def restore(self, node: str, owners: Iterable[Owner], kinds: frozenset[str] | None = None) -> None:
        """Restore the owners (of ``kinds``, or all) this node's drain raised; an event per owner."""
        for owner in owners:
            if kinds is not None and owner.kind not in kinds:
                continue
            restored = self.surges.restore(owner, node)
            if restored is not None:
                message = f"{owner.key} restored to {restored} replica(s) after the drain of {node}"
                self.nodes.event(node, "Normal", "DrainSurgeRestored", message)
                log.info("DrainSurgeRestored: %s", message)

    def sweep(self, busy: Collection[str]) -> list[str]:
        """Restore owners left raised by a drain nothing will finish: their node is gone (deleted
        while its operator was down), or carries no intent that lists them. Owners are listed before
        their nodes are read: the intent that lists an owner is written before it is raised, so a
        drain starting meanwhile is always seen. Nodes of this process's running drains (``busy``)
        and intents that cannot be read are left alone: an owner left raised costs replicas, one
        restored mid-drain costs serving capacity. What was restored, one message per owner."""
        restored: list[str] = []
        for owner, record in self.surges.raised():
            if record.node in busy:
                continue
            live = self.nodes.node(record.node)
            if live is not None:
                text = live.annotations.get(INTENT_ANNOTATION)
                intent = Intent.from_json(text) if text else None
                if text and (intent is None or owner in intent.surges):
                    continue
            count = self.surges.restore(owner, record.node)
            if count is None:
                continue
            where = "is gone" if live is None else "has no drain that raised it"
            message = f"{owner.key} restored to {count} replica(s): node {record.node} {where}"
            self.nodes.event(record.node, "Normal", "DrainSurgeRestored", message)
            log.info("DrainSurgeRestored: %s", message)
            restored.append(message)
        return restored
