"""Executes a consolidation plan safely, one node at a time.

For each node the plan empties (a :class:`~rightsizer.runtime.drain_steps.NodeStep`), right before
acting:

1. **re-validate** against the live cluster: the node still exists, belongs to the same pool, is not
   protected or already disrupted; its pods are still the planned ones and still movable (same rules
   as the planner, with live PDBs); the pool's disruption budget still has room;
2. **record intent** on the node (annotation ``rightsizer.io/disruption-intent``) *before* touching it,
   so a restarted operator knows what was going on;
3. **taint** it ``rightsizer.io/disrupted:NoSchedule`` so nothing new lands there;
   (make-before-break, :mod:`~rightsizer.runtime.drain_surge`: raise the Deployments and StatefulSets
   that would lose Ready replicas, and wait, bounded, until the extra replicas are available;)
4. **evict** its pods through the Eviction API (a PDB refusal stops this node: untaint, event);
5. **wait**, bounded, until the evicted pods' controllers have their replicas Running elsewhere
   (timeout: untaint, event, give the node up; the node deleted by someone else meanwhile: stop
   waiting at once, event, and leave the next pass to plan on what is left);
6. **remove** it through the pool's provider.

:meth:`Executor.recover` runs before every pass: a node left with an intent by a dead operator is
rolled back (still draining: untaint) or its removal resumed (drain finished), so no node stays
tainted forever. Time is injected (clock and sleep) so all of this is tested without waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from rightsizer.adapters.node_drain import Eviction, EvictionResult
from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.core.budgets import (
    DISRUPTED_TAINT,
    Mobility,
    PodPolicy,
    allowed_disruptions,
    is_disrupting,
    node_block_reason,
    pod_disposition,
)
from rightsizer.core.consolidation_state import timed_rules
from rightsizer.core.matching import selector_matches
from rightsizer.core.pools import PoolPolicy, assign_pools
from rightsizer.core.protections import CHECKPOINT_DONE, EVICT_REQUESTED, checkpoint_done, wants_checkpoint
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget, Taint
from rightsizer.core.timestamps import format_time
from rightsizer.runtime.drain_intent import (
    INTENT_ANNOTATION,
    PHASE_DRAINING,
    PHASE_REMOVING,
    Intent,
    process_holder,
)
from rightsizer.runtime.drain_lease import IntentLease
from rightsizer.runtime.drain_steps import ExecutorSettings, NodeStep, Result, StepOutcome
from rightsizer.runtime.drain_surge import (
    RESTORED_AFTER_EVICTION,
    Surged,
    SurgeEdge,
    SurgeSteps,
    SurgeSweep,
)

TAINT = Taint(DISRUPTED_TAINT, "consolidation", "NoSchedule")

log = logging.getLogger(__name__)


class DrainEdge(Protocol):
    """What the executor needs from the API server (KubeNodeDrain, or a fake in tests)."""

    def node(self, name: str) -> Node | None: ...
    def nodes_annotated(self, key: str) -> list[Node]: ...
    def pods_on(self, node: str) -> tuple[Pod, ...]: ...
    def pdbs(self, namespaces: Sequence[str]) -> tuple[PodDisruptionBudget, ...]: ...
    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None: ...
    def swap_annotation(self, node: str, key: str, expected: str, value: str) -> bool: ...
    def annotate_pod(self, pod: Pod, annotations: Mapping[str, str | None]) -> None: ...
    def set_taint(self, node: str, taint: Taint, present: bool) -> None: ...
    def evict(self, pod: Pod) -> EvictionResult: ...
    def replacements_ready(self, evicted: Sequence[Pod], drained_node: str) -> tuple[bool, str]: ...
    def event(self, node: str, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Validated:
    node: Node
    pool: PoolPolicy
    pods: tuple[Pod, ...]  # to evict


@dataclass
class Executor:
    edge: DrainEdge
    provider_of: Callable[[str], NodePoolProvider | None]
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    settings: ExecutorSettings = field(default_factory=ExecutorSettings)
    holder: str = field(default_factory=process_holder)
    surges: SurgeEdge | None = None  # None: pods are evicted without raising their owners first
    _sweep: SurgeSweep = field(default_factory=SurgeSweep)

    def _surge_steps(self) -> SurgeSteps | None:
        timeout, poll = self.settings.drain_timeout, self.settings.poll_seconds
        return (
            SurgeSteps(self.surges, self.edge, self.clock, self.sleep, timeout, poll) if self.surges else None
        )

    # -- the lease --------------------------------------------------------------------------------

    @property
    def _lease(self) -> IntentLease:
        return IntentLease(self.edge, self.holder, self.clock, self.settings.lease)

    def _lost(self, node: str, pool: str, evicted: Sequence[Pod]) -> StepOutcome:
        message = f"drain of {node} was taken over by another operator process; stopped without acting"
        log.warning("DrainTakenOver: %s", message)
        return StepOutcome(node, pool, Result.TAKEN_OVER, message, tuple(p.key for p in evicted))

    # -- one node ---------------------------------------------------------------------------------

    def run(
        self,
        step: NodeStep,
        pools: Sequence[PoolPolicy],
        live_nodes: Sequence[Node],
        policies: Mapping[str, PodPolicy] | None = None,
        unplaceable: Callable[[str, frozenset[str]], str | None] | None = None,
    ) -> StepOutcome:
        """Re-validate, then drain and remove one node. ``live_nodes`` are the cluster's nodes as listed
        right now (for pool membership and the budget). ``unplaceable(node, covered)`` re-simulates on
        the live cluster right before each eviction: why the node's remaining pods, but those a surge
        replica stands in for, no longer fit elsewhere."""
        checked = self._check(step, pools, live_nodes, policies or {})
        if isinstance(checked, str):
            return StepOutcome(step.node, step.pool, Result.SKIPPED, checked)
        node, pool, movable = checked.node, checked.pool, checked.pods
        provider = self.provider_of(pool.name)
        if provider is None:
            return StepOutcome(
                step.node, pool.name, Result.SKIPPED, f"pool {pool.name} has no usable provider"
            )
        planned = Intent(step.reason, pool.name, PHASE_DRAINING, self.clock(), tuple(p.key for p in movable))
        # Intent first: if we die after the taint, the restarted operator finds out why it is there.
        intent: Intent | None = self._lease.claim(node.name, planned)
        self.edge.set_taint(node.name, TAINT, True)
        if (unanswered := self._checkpoints(node.name, pool, movable)) is not None:
            return StepOutcome(node.name, pool.name, Result.BLOCKED, unanswered)
        surged, steps = Surged(), self._surge_steps()
        if steps is not None:
            started = steps.start(
                node.name,
                pool.make_before_break,
                movable,
                policies or {},
                lambda: self._lease.keep(node.name),
            )
            if not isinstance(started, Surged):
                if started.rollback:
                    self._rollback(node.name, started.reason, started.message)
                elif self.edge.node(node.name) is None:
                    steps.restore(node.name, started.owners)
                    return self._gone(node.name, pool.name, ())
                return StepOutcome(node.name, pool.name, started.result, started.message)
            surged = started
        evicted: list[Pod] = []
        # Pods a surge stands in for need no room (their surge replica is theirs) and go last: evicted
        # first, their Pending replacements would take room the others need until the restore.
        for pod in sorted(movable, key=lambda p: p.key in surged.covered):
            if (intent := self._lease.keep(node.name)) is None:
                return self._lost(node.name, pool.name, evicted)
            check = unplaceable if pod.key not in surged.covered else None
            if check is not None and (why := check(node.name, surged.covered)) is not None:
                message = f"{why}; drain of {node.name} stopped before evicting {pod.key}, node kept"
                self._rollback(node.name, "DrainReplanned", message)
                return StepOutcome(
                    node.name, pool.name, Result.BLOCKED, message, tuple(p.key for p in evicted)
                )
            result = self.edge.evict(pod)
            if result.outcome is Eviction.BLOCKED:
                message = f"eviction of {pod.key} refused ({result.message}); node {node.name} kept"
                self._rollback(node.name, "DrainBlocked", message)
                return StepOutcome(
                    node.name, pool.name, Result.BLOCKED, message, tuple(p.key for p in evicted)
                )
            if result.outcome is Eviction.EVICTED:
                evicted.append(pod)
        if steps is not None:
            steps.restore(node.name, surged.owners, RESTORED_AFTER_EVICTION)
        evicted_keys = tuple(p.key for p in evicted)
        if evicted:
            deadline = self.clock() + self.settings.drain_timeout
            while True:
                if self.edge.node(node.name) is None:
                    if steps is not None:
                        steps.restore(node.name, surged.owners)
                    return self._gone(node.name, pool.name, evicted_keys)
                if (intent := self._lease.keep(node.name)) is None:
                    return self._lost(node.name, pool.name, evicted)
                ready, status = self.edge.replacements_ready(evicted, node.name)
                if ready:
                    break
                if self.clock() >= deadline:
                    limit = int(self.settings.drain_timeout.total_seconds())
                    message = (
                        f"replacements of evicted pod(s) {', '.join(evicted_keys)} not Running within "
                        f"{limit}s ({status}); node {node.name} kept"
                    )
                    self._rollback(node.name, "DrainTimedOut", message)
                    return StepOutcome(node.name, pool.name, Result.TIMED_OUT, message, evicted_keys)
                self.sleep(self.settings.poll_seconds)
        if steps is not None:
            steps.restore(node.name, surged.owners)
        if self.edge.node(node.name) is None:
            return self._gone(node.name, pool.name, evicted_keys)
        if (intent := self._lease.keep(node.name)) is None:
            return self._lost(node.name, pool.name, evicted)
        removing = replace(intent, phase=PHASE_REMOVING, removal_started=self.clock(), surges=())
        self.edge.annotate(node.name, {INTENT_ANNOTATION: removing.to_json()})
        return self._remove(node.name, pool.name, provider, step.reason, evicted_keys)

    def _check(
        self,
        step: NodeStep,
        pools: Sequence[PoolPolicy],
        live_nodes: Sequence[Node],
        policies: Mapping[str, PodPolicy],
    ) -> Validated | str:
        """The live node, its pool and the pods to evict; or why the step must not run now."""
        node = self.edge.node(step.node)
        if node is None:
            return f"node {step.node} no longer exists"
        assignment = assign_pools([node], pools)
        pool = assignment.pool_of(node.name)
        if node.name in assignment.contested:
            rivals = " and ".join(assignment.contested[node.name])
            return f"node {node.name} is selected by GPUNodePools {rivals}; it belongs to neither"
        if pool is None or pool.name != step.pool:
            return f"node {node.name} is no longer in GPUNodePool {step.pool}"
        now = self.clock()
        if (block := node_block_reason(node, now)) is not None:
            return block
        if INTENT_ANNOTATION in node.annotations:
            return f"node {node.name} already carries a disruption intent"
        pods = [p for p in self.edge.pods_on(node.name) if not p.terminal]
        pdbs = self.edge.pdbs([p.namespace for p in pods])
        movable: list[Pod] = []
        planned = set(step.pods)
        for pod in pods:
            matching = [
                b for b in pdbs if b.namespace == pod.namespace and selector_matches(b.selector, pod.labels)
            ]
            disposition = pod_disposition(
                pod,
                policy=policies.get(pod.key),
                pdbs=matching,
                allow_training=pool.allow_training_disruption,
                allow_local_storage=False,
                timed=timed_rules(pool, now),
            )
            if disposition.mobility is Mobility.STAYS:
                continue
            if disposition.mobility is Mobility.BLOCKS:
                return f"pod {pod.key} cannot move: {disposition.reason}"
            if pod.key not in planned:
                return f"pod {pod.key} arrived on {node.name} after planning; replanning"
            movable.append(pod)
        members = [n for n in live_nodes if selector_matches(pool.node_selector, n.labels)]
        disrupting = sum(1 for n in members if is_disrupting(n) or INTENT_ANNOTATION in n.annotations)
        room = allowed_disruptions(pool.budgets, len(members), disrupting, self.clock(), step.budget_reason)
        if room <= 0:
            return f"disruption budget of pool {pool.name} exhausted ({disrupting} node(s) disrupted now)"
        return Validated(node, pool, tuple(movable))

    def _checkpoints(self, node: str, pool: PoolPolicy, movable: Sequence[Pod]) -> str | None:
        """Ask every pod that wants a checkpoint before eviction, and wait for all of them to answer
        (bounded by the pool's checkpointTimeout). None when every one answered; else the drain is
        rolled back before anything was evicted, and why is returned."""
        asking = [p for p in movable if wants_checkpoint(p)]
        if not asking:
            return None
        asked_at = format_time(self.clock())
        for pod in asking:
            if not checkpoint_done(pod):
                self.edge.annotate_pod(pod, {EVICT_REQUESTED: asked_at})
        names = ", ".join(p.key for p in asking)
        self.edge.event(node, "Normal", "CheckpointRequested", f"asked {names} to checkpoint before eviction")
        deadline = self.clock() + pool.checkpoint_timeout
        while True:
            # By name and UID: a pod recreated under the same name is another pod.
            now_on_node = {(p.key, p.uid): p for p in self.edge.pods_on(node)}
            waiting = [
                p
                for p in asking
                if (p.key, p.uid) in now_on_node and not checkpoint_done(now_on_node[(p.key, p.uid)])
            ]
            if not waiting:
                return None
            if self._lease.keep(node) is None:
                return f"drain of {node} was taken over by another operator process"
            if self.clock() >= deadline:
                limit = int(pool.checkpoint_timeout.total_seconds())
                for pod in waiting:
                    self.edge.annotate_pod(pod, {EVICT_REQUESTED: None})
                message = (
                    f"pod(s) {', '.join(p.key for p in waiting)} did not answer {CHECKPOINT_DONE} within "
                    f"{limit}s; nothing evicted, node {node} kept"
                )
                self._rollback(node, "CheckpointTimedOut", message)
                return message
            self.sleep(self.settings.poll_seconds)

    def _remove(
        self, node: str, pool: str, provider: NodePoolProvider, reason: str, evicted: tuple[str, ...]
    ) -> StepOutcome:
        try:
            provider.remove_node(node)
        except ProviderError as exc:
            self._rollback(node, "RemovalFailed", str(exc))
            return StepOutcome(node, pool, Result.FAILED, str(exc), evicted)
        if not provider.removes_nodes:
            # Cordon-only providers: the node stays cordoned for the platform to remove; our taint
            # and intent go, so the node does not count as being disrupted forever.
            self._clear(node)
        message = f"node {node} drained and removed through {provider.describe()}: {reason}"
        self.edge.event(node, "Normal", "NodeRemoved", message)
        return StepOutcome(node, pool, Result.REMOVED, message, evicted)

    def _gone(self, node: str, pool: str, evicted: tuple[str, ...]) -> StepOutcome:
        """Someone else deleted the node mid-drain: no taint or intent is left to undo, and waiting on
        would only hold up the pool. The evicted pods' controllers recreate them wherever they fit."""
        moved = f"; evicted before: {', '.join(evicted)}" if evicted else ""
        message = (
            f"node {node} was deleted by someone else during its drain; stopped waiting for "
            f"replacements{moved}; the next pass plans on the nodes that are left"
        )
        self.edge.event(node, "Warning", "DrainNodeGone", message)
        log.warning("DrainNodeGone: %s", message)
        return StepOutcome(node, pool, Result.NODE_GONE, message, evicted)

    def _clear(self, node: str) -> None:
        # Restore and untaint before dropping the intent: a crash in between leaves it to recovery.
        live = self.edge.node(node)
        if live is None:
            return
        intent = Intent.from_json(live.annotations.get(INTENT_ANNOTATION) or "")
        if intent is not None and intent.surges and (steps := self._surge_steps()) is not None:
            steps.restore(node, intent.surges)
        self.edge.set_taint(node, TAINT, False)
        self.edge.annotate(node, {INTENT_ANNOTATION: None})

    def _rollback(self, node: str, reason: str, message: str) -> None:
        self._clear(node)
        self.edge.event(node, "Warning", reason, message)
        log.warning("%s: %s", reason, message)

    def sweep_surges(self, busy: Collection[str] = ()) -> list[str]:
        """Restore owners left raised by drains nothing will finish (now and then); what was."""
        return self._sweep(self._surge_steps(), busy, self.clock())

    # -- after a restart --------------------------------------------------------------------------

    def recover(
        self, manages: Callable[[str], bool] = lambda pool: True, busy: Collection[str] = ()
    ) -> list[StepOutcome]:
        """Undo interrupted drains and finish interrupted removals, from what the nodes say.
        Intents of pools this operator does not manage (``manages``), of this process's drains still
        running (``busy``), and of other processes whose lease has not run out are left alone; any
        other is first claimed (so its old holder stops), then resumed or rolled back."""
        outcomes: list[StepOutcome] = []
        for node in self.edge.nodes_annotated(INTENT_ANNOTATION):
            intent = Intent.from_json(node.annotations[INTENT_ANNOTATION])
            pool = intent.pool if intent else ""
            if node.name in busy or (intent is not None and not manages(pool)):
                continue
            if intent is not None:
                if intent.held_by_other(self.holder, self.clock()):
                    continue
                if intent.phase == PHASE_REMOVING and intent.holder == self.holder:
                    continue  # this process asked the provider already; the pool reports it if stuck
                reclaimed = self._lease.reclaim(node.name, intent, node.annotations[INTENT_ANNOTATION])
                if reclaimed is None:
                    continue  # another process claimed it first; it is theirs now
                intent = reclaimed
            provider = self.provider_of(pool) if intent else None
            if intent is not None and intent.phase == PHASE_REMOVING and provider is not None:
                outcomes.append(self._remove(node.name, pool, provider, intent.plan, ()))
                outcomes[-1] = StepOutcome(node.name, pool, Result.RESUMED, outcomes[-1].message)
                continue
            message = (
                f"drain of {node.name} was interrupted (the operator restarted, or its pass failed "
                "on the way); node untainted, pods that were evicted are recreated by their controllers"
            )
            self._rollback(node.name, "DrainRolledBack", message)
            outcomes.append(StepOutcome(node.name, pool, Result.ROLLED_BACK, message))
        return outcomes
