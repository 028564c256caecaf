"""One consolidation pass for one GPUNodePool: read, plan, act, report.

Only nodes of pools that have a GPUNodePool are ever touched: the planner leaves nodes outside every
pool alone, and this pass acts on the steps of its own pool only. Passes of different pools are
serialised (one lock) so each plans on a cluster no other pass is changing at the same moment.

Per pass: finish or undo drains a dead operator left behind (recovery), plan with every pool, then
for this pool drain and remove at most ``max_nodes_per_pass`` nodes (empty nodes only once they have
been empty for ``scaleDownAfter``), add nodes when GPU pods are Pending that a new node of this pool
would take (provider permitting, ``maxNodes`` respected), and compute the pool's status and metrics.

A node whose drain failed is not drained again before its back-off ends (see runtime.drain_timing),
so a workload whose replacements never become Ready is not evicted again every pass. A pool whose
nodeSelector selects nodes another pool selects too acts on no node at all until that is fixed: the
shared nodes belong to neither, and both pools say so in their ``Conflict`` condition.

This module runs the pass; when a step is due is :mod:`~rightsizer.runtime.drain_timing`, ordering
nodes is :mod:`~rightsizer.runtime.pool_scale_up`, and the status and warnings are
:mod:`~rightsizer.runtime.pool_reporting`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.cluster_snapshot import ClusterState, failure_reason
from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.api.durations import format_seconds
from rightsizer.core import ownership
from rightsizer.core.budgets import PodPolicy
from rightsizer.core.consolidation import unplaceable_from
from rightsizer.core.drain_backoff import BackoffPolicy
from rightsizer.core.errors import RightsizerError
from rightsizer.core.planner import PlanInput, PlannerOptions, plan
from rightsizer.core.pool_status import (
    PoolObservation,
    conflict_event,
    inputs_event,
    metrics_event,
    pool_conditions,
    provider_event,
)
from rightsizer.core.pools import PoolAssignment, PoolPolicy, assign_pools, node_price
from rightsizer.core.snapshot import Node
from rightsizer.runtime import mapping
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.drain_intent import stuck_removals
from rightsizer.runtime.drain_runner import DrainRunner
from rightsizer.runtime.drain_steps import NodeStep, Result, StepOutcome, node_steps
from rightsizer.runtime.drain_timing import DrainTiming
from rightsizer.runtime.events import Event
from rightsizer.runtime.planned_removals import apply_marks
from rightsizer.runtime.pool_reporting import (
    activity_missing,
    held_conditions,
    pool_status,
    unreadable_until,
)
from rightsizer.runtime.pool_scale_up import scale_up
from rightsizer.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)


class StateReader(Protocol):
    def read(self) -> ClusterState: ...


@dataclass(frozen=True)
class PassResult:
    status: dict[str, Any]  # the GPUNodePool status fields to patch (camelCase, JSON values)
    events: tuple[Event, ...] = ()
    outcomes: tuple[StepOutcome, ...] = ()


@dataclass(frozen=True)
class PassSettings:
    max_nodes_per_pass: int = 1
    scale_up_cooldown: timedelta = timedelta(seconds=60)
    dry_run: bool = False
    drain_backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    removal_timeout: timedelta = timedelta(minutes=15)


@dataclass
class PoolManager:
    reader: StateReader
    executor: Executor
    provider_for: Callable[[Mapping[str, Any]], NodePoolProvider]
    live_nodes: Callable[[], Sequence[Node]]
    telemetry: Telemetry
    clock: Callable[[], datetime]
    activity: Callable[[], Mapping[str, Decimal]] | None = None
    settings: PassSettings = field(default_factory=PassSettings)
    pool_selector: Mapping[str, str] = field(default_factory=dict)  # GPUNodePools this operator manages
    drains: DrainRunner = field(default_factory=lambda: DrainRunner(0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _documents: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    _last_scale_up: dict[str, datetime] = field(default_factory=dict)
    _last_scale_down: dict[str, datetime] = field(default_factory=dict)
    _saved_per_hour: dict[str, Decimal] = field(default_factory=dict)
    _timing: DrainTiming = field(default_factory=DrainTiming)  # empty since, failed drains
    # Per pool, the (object, value) pairs of unreadable do-not-disrupt-until already reported.
    _reported_until: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def provider(self, pool: str) -> NodePoolProvider | None:
        document = self._documents.get(pool)
        if document is None:
            return None
        try:
            return self.provider_for(document)
        except ProviderError as exc:
            log.warning("%s", exc)
            return None

    def _provider_problem(self, pool: str) -> str | None:
        """Why the pool's provider cannot act this pass (it cannot be built, or says so), or None."""
        document = self._documents.get(pool)
        if document is None:
            return None
        try:
            return self.provider_for(document).check()
        except ProviderError as exc:
            return str(exc)

    def manages(self, pool: str) -> bool:
        labels = ((self._documents.get(pool) or {}).get("metadata") or {}).get("labels") or {}
        return pool in self._documents and all(labels.get(k) == v for k, v in self.pool_selector.items())

    def recover(self) -> list[StepOutcome]:
        """Undo or finish drains a previous operator process left on nodes."""
        with self._lock:
            self._documents = dict(self.reader.read().pool_documents)
            return self.executor.recover(self.manages, self.drains.busy())

    def run_pass(self, pool_name: str, stored_status: Mapping[str, Any] | None = None) -> PassResult:
        """One pass; ``stored_status`` is the pool's status as the caller has it (the conditions
        keep their transition times even when the pool itself cannot be read)."""
        with self._lock:
            try:
                return self._run_pass(pool_name, stored_status)
            finally:
                # Counted also when the pass failed: tests of "nothing happened" wait for passes.
                self.telemetry.pool_passes.inc(pool_name)

    def _run_pass(self, pool_name: str, stored_status: Mapping[str, Any] | None) -> PassResult:
        events: list[Event] = []
        try:
            state = self.reader.read()
        except (ApiException, RightsizerError) as exc:
            # Nodes, pods or pools cannot be read: nothing is planned, let alone drained.
            previous = list((stored_status or {}).get("conditions") or [])
            hold = PoolObservation(generation=None, inputs_hold=f"the cluster ({failure_reason(exc)})")
            conditions = held_conditions(previous, pool_conditions(previous, hold, self.clock()))
            change = inputs_event(previous, conditions)
            return PassResult({"conditions": conditions}, (Event(*change),) if change else ())
        self._documents = dict(state.pool_documents)
        if stored_status is None:
            stored_status = (state.pool_documents.get(pool_name) or {}).get("status")
        previous = list((stored_status or {}).get("conditions") or [])
        if pool_name in state.pool_errors:
            problem = state.pool_errors[pool_name]
            observed = PoolObservation(generation=None, problem=problem)
            status = {"conditions": pool_conditions(previous, observed, self.clock())}
            return PassResult(status, (Event("Warning", "InvalidPool", problem),))
        for outcome in self.executor.recover(self.manages, self.drains.busy()):
            events.append(Event("Warning", "DrainRecovered", outcome.message))
        busy = self.drains.busy()
        events.extend(Event("Normal", "DrainSurgeRestored", m) for m in self.executor.sweep_surges(busy))
        if events:
            state = self.reader.read()  # recovery changed nodes: plan on what is there now
        pool = next((p for p in state.pools if p.name == pool_name), None)
        document = state.pool_documents.get(pool_name)
        if pool is None or document is None:
            return PassResult({})
        now = self.clock()
        generation = (document.get("metadata") or {}).get("generation")
        activity, metrics_hold = self._activity()
        policies = pod_policies_of(state)
        inputs_hold = state.unreadable_summary()
        result = plan(
            PlanInput(
                snapshot=state.snapshot,
                now=now,
                pools=state.pools,
                gpu_activity=activity,
                pod_policies=policies,
                options=PlannerOptions(activity_measured=self.activity is not None),
            )
        )
        assignment = assign_pools(state.snapshot.nodes, state.pools)
        members = _members(state, assignment, pool)
        if metrics_hold is None and self.activity is not None:
            metrics_hold = activity_missing(state, members, activity)
        overlaps = assignment.overlaps(pool_name)
        self._timing.observe(state, members, now, self.settings.drain_backoff)
        # Drains that ended since the last pass first: a failed one's back-off must hold this pass.
        outcomes = self.drains.finished(pool.name)
        for outcome in outcomes:
            self._report(outcome, pool, members, events)
        started: list[StepOutcome] = []
        provider_hold = self._provider_problem(pool_name)
        removal_hold = self._stuck(pool_name, members, now)
        acting = not self.settings.dry_run and not overlaps and provider_hold is None and removal_hold is None
        steps = [step for step in node_steps(result) if step.pool == pool.name] if acting else []
        if metrics_hold is not None or inputs_hold is not None:
            steps = [step for step in steps if not step.pods]  # empty nodes evict nothing
        if not self.settings.dry_run:  # a dry run touches no node, not even with a mark
            # Every node the plan empties is marked before the first eviction (planned_removals);
            # one kept after a failed drain is not, until it may be tried again.
            marked = {step.node for step in steps if not self._timing.cooling(step.node, now)}
            apply_marks(self.executor.edge, members, marked)
        if acting:
            due = self._timing.due(steps, pool_name, pool.scale_down_after, now)
            started = self._execute(due, state.pools, pool, members, policies)
            events.extend(self._scale_up(state, pool, members, now))
        for outcome in started:
            self._report(outcome, pool, members, events)
        outcomes = [*outcomes, *started]
        status = pool_status(
            state,
            pool,
            members,
            activity,
            generation=generation,
            last_scale_down=self._last_scale_down.get(pool.name),
            telemetry=self.telemetry,
        )
        observed = PoolObservation(
            generation=generation,
            nodes=len(members),
            overlaps=overlaps,
            metrics_configured=self.activity is not None,
            metrics_hold=metrics_hold,
            inputs_hold=inputs_hold,
            provider_hold=provider_hold,
            removal_hold=removal_hold,
        )
        status["conditions"] = pool_conditions(previous, observed, now)
        warnings, self._reported_until[pool.name] = unreadable_until(
            state, members, now, self._reported_until.get(pool.name, set())
        )
        events.extend(warnings)
        for change in (
            conflict_event(previous, status["conditions"]),
            metrics_event(previous, status["conditions"]),
            inputs_event(previous, status["conditions"]),
            provider_event(previous, status["conditions"]),
        ):
            if change is not None:
                events.append(Event(*change))
        return PassResult(status, tuple(events), tuple(outcomes))

    def _stuck(self, pool: str, members: Sequence[Node], now: datetime) -> str | None:
        """Nodes the provider was asked to remove long ago and that are still there: the provider is not
        removing nodes (a NodeClaim stuck terminating, a finalizer that never goes), so draining more
        would only evict pods for nothing. The pool holds until they are gone."""
        stuck = stuck_removals(members, now, self.settings.removal_timeout)
        if not stuck:
            return None
        provider = self.provider(pool)
        through = provider.describe() if provider is not None else "its provider"
        nodes = ", ".join(f"{name} ({format_seconds(waited)} ago)" for name, waited in stuck)
        return f"removal of node(s) {nodes} was asked of {through} and they are still there"

    def _unplaceable(self, node: str, covered: frozenset[str]) -> str | None:
        """Re-simulated on the cluster as it is now: why the node's remaining pods (but ``covered``,
        whose surge replicas run already) would not fit elsewhere (or why that cannot be known), or
        None."""
        try:
            state = self.reader.read()
        except (ApiException, RightsizerError) as exc:
            return f"the cluster cannot be read ({failure_reason(exc)})"
        if (unreadable := state.unreadable_summary()) is not None:
            return f"cannot read {unreadable}"
        assignment = assign_pools(state.snapshot.nodes, state.pools)
        return unplaceable_from(
            state.snapshot,
            assignment,
            node,
            now=self.clock(),
            policies=pod_policies_of(state),
            covered=covered,
        )

    def _back_off(self, outcome: StepOutcome) -> str:
        """Record a failed drain; the event says when the node may be tried again."""
        if outcome.result not in (Result.BLOCKED, Result.TIMED_OUT, Result.FAILED):
            return outcome.message
        again = self._timing.failed(outcome.node, self.clock(), self.settings.drain_backoff)
        return f"{outcome.message}; {again}"

    # -- acting -----------------------------------------------------------------------------------

    def _activity(self) -> tuple[Mapping[str, Decimal], str | None]:
        """GPU activity per pod, and why it could not be read (None when it could)."""
        if self.activity is None:
            return {}, None
        try:
            return self.activity(), None
        except RightsizerError as exc:
            # Something is broken: hold still. The plan is still made (status, recommendations), but
            # no node with pods is drained until the operator can see what the GPUs do again.
            log.warning("GPU activity unavailable, draining nothing this pass: %s", exc)
            self.telemetry.errors.inc("consolidation-activity")
            return {}, str(exc)

    def _execute(
        self,
        steps: list[NodeStep],
        pools: Sequence[PoolPolicy],
        pool: PoolPolicy,
        members: Sequence[Node],
        policies: Mapping[str, PodPolicy],
    ) -> list[StepOutcome]:
        """Hand the due steps to the drain runner: inline, until max_nodes_per_pass nodes went; on
        workers, as many as max_nodes_per_pass allows beside this pool's drains still running."""
        outcomes: list[StepOutcome] = []
        started = self.drains.running_in(pool.name)
        for step in steps:
            if started >= self.settings.max_nodes_per_pass or self.drains.free() <= 0:
                break
            live = self.live_nodes()

            def drain(step: NodeStep = step, live: Sequence[Node] = live) -> StepOutcome:
                return self.executor.run(step, pools, live, policies, self._unplaceable)

            outcome = self.drains.submit(pool.name, step.node, drain)
            if outcome is None:
                started += 1
                continue
            outcomes.append(outcome)
            if outcome.result is Result.REMOVED:
                started += 1
        return outcomes

    def _report(
        self, outcome: StepOutcome, pool: PoolPolicy, members: Sequence[Node], events: list[Event]
    ) -> None:
        """Count, account and explain one drain's outcome; a failed one starts the node's back-off."""
        self._account(outcome, pool, members)
        self.telemetry.decisions.inc(
            f"node{outcome.result.value[:1].upper()}{outcome.result.value[1:]}", "consolidation"
        )
        if outcome.result is Result.REMOVED:
            events.append(Event("Normal", "NodeRemoved", outcome.message))
        elif outcome.result is not Result.SKIPPED:
            name = f"Drain{outcome.result.value[:1].upper()}{outcome.result.value[1:]}"
            events.append(Event("Warning", name, self._back_off(outcome)))

    def _account(self, outcome: StepOutcome, pool: PoolPolicy, members: Sequence[Node]) -> None:
        """What a removed node saves, once its drain has ended."""
        if outcome.result is not Result.REMOVED:
            return
        self._last_scale_down[pool.name] = self.clock()
        node = next((n for n in members if n.name == outcome.node), None)
        if node is not None:
            saved = node_price(node, pool)
            self._saved_per_hour[pool.name] = self._saved_per_hour.get(pool.name, Decimal(0)) + saved
            total = sum(self._saved_per_hour.values(), Decimal(0))
            self.telemetry.savings_per_hour.set(float(total), "consolidation", pool.currency)

    def _scale_up(
        self,
        state: ClusterState,
        pool: PoolPolicy,
        members: Sequence[Node],
        now: datetime,
    ) -> list[Event]:
        last = self._last_scale_up.get(pool.name)
        if last is not None and now - last < self.settings.scale_up_cooldown:
            return []
        attempt = scale_up(state, pool, members, self.provider)
        if attempt.ordered:
            self._last_scale_up[pool.name] = now
            self.telemetry.decisions.inc("scaleUp", "pendingGpuPods")
        return list(attempt.events)


def pod_policies_of(state: ClusterState) -> dict[str, PodPolicy]:
    """What the GPUWorkloads say about every pod: planner and executor use the same."""
    claims = mapping.workload_claims(state.workloads, state.selectors, state.unresolved)
    return ownership.pod_policies(state.snapshot.pods, claims, state.owners, WORKLOAD_ANNOTATION)


def _members(state: ClusterState, assignment: PoolAssignment, pool: PoolPolicy) -> list[Node]:
    return [n for n in state.snapshot.nodes if assignment.node_pool.get(n.name) == pool.name]
