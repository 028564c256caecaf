"""One consolidation pass for one GPUNodePool: read, plan, act, report.

Only nodes of pools that have a GPUNodePool are ever touched: the planner leaves nodes outside every
pool alone, and this pass acts on the steps of its own pool only. Passes of different pools are
serialised (one lock) so each plans on a cluster no other pass is changing at the same moment.

Per pass: finish or undo drains a dead operator left behind (recovery), plan with every pool, then
for this pool drain and remove at most ``max_nodes_per_pass`` nodes (empty nodes only once they have
been empty for ``scaleDownAfter``), add nodes when GPU pods are Pending that a new node of this pool
would take (provider permitting, ``maxNodes`` respected), and compute the pool's status and metrics.

A node whose drain failed is not drained again before its back-off ends (see core.drain_backoff), so
a workload whose replacements never become Ready is not evicted again every pass. A pool whose
nodeSelector selects nodes another pool selects too acts on no node at all until that is fixed: the
shared nodes belong to neither, and both pools say so in their ``Conflict`` condition.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.cluster_snapshot import ClusterReader, ClusterState, failure_reason
from rightsizer.adapters.metrics.base import AUTO_SIGNAL, GpuMetricsSource
from rightsizer.adapters.node_drain import KubeNodeDrain
from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.adapters.nodepools.registry import provider_for
from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.api.durations import format_seconds
from rightsizer.api.v1alpha1.gpunodepool import GPUNodePoolStatus
from rightsizer.core import drain_backoff, ownership
from rightsizer.core.budgets import PodPolicy
from rightsizer.core.consolidation import unplaceable_from
from rightsizer.core.drain_backoff import BackoffPolicy, NodeFailures
from rightsizer.core.errors import InvalidPool, RightsizerError
from rightsizer.core.gpu_share import gpu_share
from rightsizer.core.metrics_view import IDLE_GPU_PERCENT
from rightsizer.core.planner import PlanInput, PlannerOptions, plan
from rightsizer.core.pool_status import (
    INPUTS_AVAILABLE,
    PoolObservation,
    conflict_event,
    inputs_event,
    metrics_event,
    pool_conditions,
    provider_event,
)
from rightsizer.core.pools import PoolAssignment, PoolPolicy, assign_pools, node_price, parse_duration
from rightsizer.core.protections import DO_NOT_DISRUPT_UNTIL, protected_until
from rightsizer.core.snapshot import (
    GPU_PRODUCT_LABEL,
    Node,
    Pod,
    Taint,
    hard_taints,
    node_term_matches,
    tolerates,
)
from rightsizer.runtime import mapping
from rightsizer.runtime.consolidation import (
    Executor,
    ExecutorSettings,
    NodeStep,
    Result,
    StepOutcome,
    node_steps,
)
from rightsizer.runtime.drain_intent import stuck_removals
from rightsizer.runtime.drain_runner import DrainRunner
from rightsizer.runtime.events import Event
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_SCALE_DOWN_AFTER = timedelta(minutes=10)


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
    _empty_since: dict[str, datetime] = field(default_factory=dict)
    _last_scale_up: dict[str, datetime] = field(default_factory=dict)
    _last_scale_down: dict[str, datetime] = field(default_factory=dict)
    _saved_per_hour: dict[str, Decimal] = field(default_factory=dict)
    _failed_drains: dict[str, NodeFailures] = field(default_factory=dict)
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
            conditions = _held_conditions(previous, pool_conditions(previous, hold, self.clock()))
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
        if events:
            state = self.reader.read()  # recovery changed nodes: plan on what is there now
        pool = next((p for p in state.pools if p.name == pool_name), None)
        document = state.pool_documents.get(pool_name)
        if pool is None or document is None:
            return PassResult({})
        now = self.clock()
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
            metrics_hold = _activity_missing(state, members, activity)
        overlaps = assignment.overlaps(pool_name)
        self._track_empty(state, members, now)
        self._failed_drains = drain_backoff.prune(
            self._failed_drains, {n.name for n in state.snapshot.nodes}, now, self.settings.drain_backoff
        )
        # Drains that ended since the last pass first: a failed one's back-off must hold this pass.
        outcomes = self.drains.finished(pool.name)
        for outcome in outcomes:
            self._report(outcome, pool, members, events)
        started: list[StepOutcome] = []
        provider_hold = self._provider_problem(pool_name)
        removal_hold = self._stuck(pool_name, members, now)
        if not self.settings.dry_run and not overlaps and provider_hold is None and removal_hold is None:
            steps = self._due(node_steps(result), pool_name, _scale_down_after(document), now)
            if metrics_hold is not None or inputs_hold is not None:
                steps = [step for step in steps if not step.pods]  # empty nodes evict nothing
            started = self._execute(steps, state.pools, pool, members, policies)
            events.extend(self._scale_up(state, pool, document, members, now))
        for outcome in started:
            self._report(outcome, pool, members, events)
        outcomes = [*outcomes, *started]
        status = self._status(state, pool, document, members, activity)
        observed = PoolObservation(
            generation=(document.get("metadata") or {}).get("generation"),
            nodes=len(members),
            overlaps=overlaps,
            metrics_configured=self.activity is not None,
            metrics_hold=metrics_hold,
            inputs_hold=inputs_hold,
            provider_hold=provider_hold,
            removal_hold=removal_hold,
        )
        status["conditions"] = pool_conditions(previous, observed, now)
        events.extend(self._unreadable_until(pool.name, state, members, now))
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

    def _unplaceable(self, node: str) -> str | None:
        """Re-simulated on the cluster as it is now: why the node's remaining pods would not fit
        elsewhere (or why that cannot be known), or None."""
        try:
            state = self.reader.read()
        except (ApiException, RightsizerError) as exc:
            return f"the cluster cannot be read ({failure_reason(exc)})"
        if (unreadable := state.unreadable_summary()) is not None:
            return f"cannot read {unreadable}"
        assignment = assign_pools(state.snapshot.nodes, state.pools)
        return unplaceable_from(
            state.snapshot, assignment, node, now=self.clock(), policies=pod_policies_of(state)
        )

    def _unreadable_until(
        self, pool: str, state: ClusterState, members: Sequence[Node], now: datetime
    ) -> list[Event]:
        """A Warning, once per object and value, for a do-not-disrupt-until that is not a time (it
        protects meanwhile: fail closed)."""
        names = {n.name for n in members}
        found = [(f"node {n.name}", n.annotations) for n in members] + [
            (f"pod {p.key}", p.annotations) for p in state.snapshot.pods if p.node_name in names
        ]
        events = []
        seen: set[tuple[str, str]] = set()
        for what, marks in found:
            until = protected_until(marks, now, what)
            if not until.unreadable:
                continue
            key = (what, marks.get(DO_NOT_DISRUPT_UNTIL, ""))
            seen.add(key)
            if key not in self._reported_until.get(pool, set()):
                events.append(Event("Warning", "InvalidAnnotation", until.reason))
        self._reported_until[pool] = seen
        return events

    def _back_off(self, outcome: StepOutcome) -> str:
        """Record a failed drain; the event says when the node may be tried again."""
        if outcome.result not in (Result.BLOCKED, Result.TIMED_OUT, Result.FAILED):
            return outcome.message
        now = self.clock()
        self._failed_drains = drain_backoff.record_failure(
            self._failed_drains, outcome.node, now, self.settings.drain_backoff
        )
        failures = self._failed_drains[outcome.node]
        return f"{outcome.message}; {drain_backoff.describe(failures, now)}"

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

    def _track_empty(self, state: ClusterState, members: Sequence[Node], now: datetime) -> None:
        busy = {
            p.node_name
            for p in state.snapshot.pods
            if p.node_name and not p.terminal and not p.is_daemon and not p.is_mirror
        }
        names = {n.name for n in members}
        for name in list(self._empty_since):
            if name in names and name in busy:
                del self._empty_since[name]
        for name in names - busy:
            self._empty_since.setdefault(name, now)

    def _due(
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
                since = self._empty_since.get(step.node)
                if since is None or now - since < scale_down_after:
                    continue
            due.append(step)
        return due

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
            self.telemetry.savings_per_hour.set(
                float(total), "consolidation", _currency(self._documents.get(pool.name))
            )

    def _scale_up(
        self,
        state: ClusterState,
        pool: PoolPolicy,
        document: Mapping[str, Any],
        members: Sequence[Node],
        now: datetime,
    ) -> list[Event]:
        spec = document.get("spec") or {}
        gpus_per_node = int(spec.get("gpusPerNode") or 0)
        if gpus_per_node <= 0:
            return []
        last = self._last_scale_up.get(pool.name)
        if last is not None and now - last < self.settings.scale_up_cooldown:
            return []
        waiting = state.unschedulable
        labels, taints = _new_node_shape(spec)
        demand = [
            pod.gpus()
            for pod in state.snapshot.pods
            if pod.key in waiting and 0 < pod.gpus() <= gpus_per_node and _would_fit(pod, labels, taints)
        ]
        wanted = _bins(demand, Decimal(gpus_per_node))
        if wanted <= 0:
            return []
        provider = self.provider(pool.name)
        if provider is None or not provider.can_scale_up:
            return []
        try:
            # Level-based: machines already ordered or still starting (not yet a node that advertises
            # its GPUs) will take these pods, so the same Pending pods never order machines twice.
            ordered = provider.desired_nodes()
        except ProviderError as exc:
            return [Event("Warning", "ScaleUpFailed", f"{exc}; ordering nothing until it can be read")]
        serving = sum(1 for n in members if n.gpus() > 0 and not n.deleting)
        coming = max((ordered if ordered is not None else len(members)) - serving, 0)
        needed = wanted - coming
        if pool.max_nodes is not None:
            needed = min(needed, pool.max_nodes - max(len(members), ordered or 0))
        if needed <= 0:
            return []
        try:
            names = provider.add_nodes(needed)
        except ProviderError as exc:
            return [Event("Warning", "ScaleUpFailed", str(exc))]
        self._last_scale_up[pool.name] = now
        self.telemetry.decisions.inc("scaleUp", "pendingGpuPods")
        added = ", ".join(names) if names else f"{needed} node(s)"
        message = f"added {added} through {provider.describe()} for {len(demand)} Pending GPU pod(s)"
        return [Event("Normal", "ScaledUp", message)]

    # -- reporting --------------------------------------------------------------------------------

    def _status(
        self,
        state: ClusterState,
        pool: PoolPolicy,
        document: Mapping[str, Any],
        members: Sequence[Node],
        activity: Mapping[str, Decimal],
    ) -> dict[str, Any]:
        pods = _pods_on(state, members)
        # Physical GPUs: a MIG slice or a time-sliced replica counts as its share of one.
        labels = {n.name: n.labels for n in members}
        share = {p.key: gpu_share(p.requests, labels.get(p.node_name or "", {})) for p in pods}
        allocatable = sum((n.physical_gpus() for n in members), Decimal(0))
        requested = sum(share.values(), Decimal(0))
        known = [p for p in pods if share[p.key] > 0 and p.key in activity]
        active: Decimal | None = None
        if known:
            active = sum((share[p.key] for p in known if activity[p.key] > IDLE_GPU_PERCENT), Decimal(0))
        cost = sum((node_price(n, pool) for n in members), Decimal(0))
        idle_cost = Decimal(0)
        for node in members:
            gpus = node.physical_gpus()
            if gpus <= 0:
                continue
            on_node = [p for p in pods if p.node_name == node.name]
            busy = sum(
                (
                    share[p.key]
                    for p in on_node
                    if p.key not in activity or activity[p.key] > IDLE_GPU_PERCENT
                ),
                Decimal(0),
            )
            idle_cost += node_price(node, pool) * max(gpus - busy, Decimal(0)) / gpus
        currency = _currency(document)
        self.telemetry.pool_nodes.set(len(members), pool.name)
        self.telemetry.pool_idle_cost_per_hour.set(float(idle_cost), pool.name, currency)
        status = GPUNodePoolStatus(
            observed_generation=(document.get("metadata") or {}).get("generation"),
            nodes=len(members),
            gpus_allocatable=int(allocatable),
            gpus_requested=int(requested),
            gpus_active=int(active) if active is not None else None,
            currency=currency,
            cost_per_hour=cost.quantize(Decimal("0.0001")),
            idle_cost_per_hour=idle_cost.quantize(Decimal("0.0001")),
            last_scale_down=self._last_scale_down.get(pool.name),
        )
        dumped: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        dumped.pop("conditions", None)  # computed by the caller, from the previous ones
        return dumped


def _currency(document: Mapping[str, Any] | None) -> str:
    return str(((document or {}).get("spec") or {}).get("currency") or "USD")


def pod_policies_of(state: ClusterState) -> dict[str, PodPolicy]:
    """What the GPUWorkloads say about every pod: planner and executor use the same."""
    claims = mapping.workload_claims(state.workloads, state.selectors, state.unresolved)
    return ownership.pod_policies(state.snapshot.pods, claims, state.owners, WORKLOAD_ANNOTATION)


def _held_conditions(
    previous: Sequence[Mapping[str, Any]], computed: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """While nothing could be read, only InputsAvailable is known: the other conditions stay as stored."""
    known = {str(c.get("type")): dict(c) for c in previous if isinstance(c, Mapping)}
    for condition in computed:
        if condition.get("type") == INPUTS_AVAILABLE:
            known[INPUTS_AVAILABLE] = dict(condition)
    return list(known.values())


def _members(state: ClusterState, assignment: PoolAssignment, pool: PoolPolicy) -> list[Node]:
    return [n for n in state.snapshot.nodes if assignment.node_pool.get(n.name) == pool.name]


def _scale_down_after(document: Mapping[str, Any]) -> timedelta:
    raw = (document.get("spec") or {}).get("scaleDownAfter")
    if raw is None:
        return DEFAULT_SCALE_DOWN_AFTER
    try:
        return parse_duration(raw, "spec.scaleDownAfter")
    except InvalidPool:
        return DEFAULT_SCALE_DOWN_AFTER


def _new_node_shape(spec: Mapping[str, Any]) -> tuple[dict[str, str], tuple[Taint, ...]]:
    """Labels and taints a node this pool adds would carry."""
    template = (spec.get("provider") or {}).get("nodeTemplate") or {}
    labels = {str(k): str(v) for k, v in (template.get("labels") or {}).items()}
    labels.update({str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()})
    if spec.get("gpuModel"):
        labels[GPU_PRODUCT_LABEL] = str(spec["gpuModel"])
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
        for t in template.get("taints") or []
    )
    return labels, taints


def _would_fit(pod: Pod, labels: Mapping[str, str], taints: tuple[Taint, ...]) -> bool:
    if any(labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    if pod.required_node_terms is not None and not any(
        node_term_matches(t, labels, labels.get("kubernetes.io/hostname", ""))
        for t in pod.required_node_terms
    ):
        return False
    return all(tolerates(pod.tolerations, t) for t in hard_taints(taints))


def _bins(demand: Sequence[Decimal], size: Decimal) -> int:
    """Nodes needed for these GPU requests, first-fit decreasing."""
    free: list[Decimal] = []
    for gpus in sorted(demand, reverse=True):
        for i, room in enumerate(free):
            if room >= gpus:
                free[i] = room - gpus
                break
        else:
            free.append(size - gpus)
    return len(free)


def _pods_on(state: ClusterState, members: Sequence[Node]) -> list[Pod]:
    """The pool's pods that hold their node: bound to one of its nodes and not finished."""
    names = {n.name for n in members}
    return [p for p in state.snapshot.pods if p.node_name in names and not p.terminal]


def _activity_missing(
    state: ClusterState, members: Sequence[Node], activity: Mapping[str, Decimal]
) -> str | None:
    """Why the pool must hold although the query worked: its GPU pods run, yet not one of them has a
    fresh sample (exporter down, scrape failing, pods not labelled). Some pods without samples is
    normal (just started); all of them is an outage."""
    gpu_pods = [p for p in _pods_on(state, members) if p.gpus() > 0]
    if not gpu_pods or any(p.key in activity for p in gpu_pods):
        return None
    return f"no fresh GPU sample for any of the pool's {len(gpu_pods)} GPU pod(s)"


def fleet_activity(
    source: GpuMetricsSource, max_age_seconds: float, clock: Callable[[], datetime]
) -> Callable[[], dict[str, Decimal]]:
    """Per-pod GPU utilisation (percent) of each pod's busiest GPU, from one fleet query: a pod is
    idle only when all its GPUs are. Stale or NaN samples are left out, so those pods count as
    unknown (never idle)."""

    def read() -> dict[str, Decimal]:
        now = clock()
        # Auto: MIG instances report GR_ENGINE_ACTIVE only; read by GPU_UTIL they would all be unknown.
        samples = source.fleet_samples(signal=AUTO_SIGNAL)
        return {
            f"{namespace}/{pod}": Decimal(str(round(sample.peak, 3)))
            for (namespace, pod), sample in samples.items()
            if sample.is_fresh(now, max_age_seconds) and not math.isnan(sample.peak)
        }

    return read


def build_pool_manager(
    api: client.ApiClient,
    settings: Settings,
    telemetry: Telemetry,
    activity_source: GpuMetricsSource | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PoolManager:
    edge = KubeNodeDrain(api)
    options = settings.consolidation
    manager: PoolManager

    def provider_of(pool: str) -> NodePoolProvider | None:
        return manager.provider(pool)

    executor = Executor(
        edge,
        provider_of,
        clock=clock,
        sleep=time.sleep,
        settings=ExecutorSettings(
            drain_timeout=timedelta(seconds=options.drain_timeout_seconds),
            poll_seconds=options.poll_seconds,
            lease=timedelta(seconds=options.intent_lease_seconds),
        ),
    )
    manager = PoolManager(
        reader=ClusterReader(api),
        executor=executor,
        provider_for=lambda document: provider_for(api, document),
        live_nodes=edge.nodes,
        telemetry=telemetry,
        clock=clock,
        activity=(
            fleet_activity(activity_source, settings.max_metric_age, clock)
            if activity_source is not None
            else None
        ),
        settings=PassSettings(
            max_nodes_per_pass=options.max_nodes_per_pass,
            scale_up_cooldown=timedelta(seconds=options.scale_up_cooldown_seconds),
            dry_run=settings.dry_run,
            removal_timeout=timedelta(seconds=options.removal_timeout_seconds),
            drain_backoff=BackoffPolicy(
                base=timedelta(seconds=options.drain_backoff_seconds),
                cap=timedelta(seconds=max(options.drain_backoff_seconds, options.drain_backoff_cap_seconds)),
            ),
        ),
        pool_selector=dict(options.pool_selector),
        drains=DrainRunner(options.drain_workers),
    )
    return manager
