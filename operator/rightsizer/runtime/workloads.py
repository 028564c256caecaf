"""One pass over one GPUWorkload: observe (target, pods, metrics, prices), decide (core), act
(Enforce only), and describe the result (status, annotations, events).

The executor side is deliberately small: the only writes are the target's /scale (or
spec.suspend), annotations, and what the caller patches onto the GPUWorkload itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from rightsizer.adapters.cluster_view import ClusterView
from rightsizer.adapters.kube import (
    PodInfo,
    Scale,
    TargetApi,
    TargetNotFound,
    TargetNotScalable,
    TargetRef,
)
from rightsizer.adapters.kube_retry import KubeApiUnavailable
from rightsizer.adapters.metrics.base import (
    FleetSamples,
    GpuMetricsSource,
    name_failing_endpoints,
)
from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.api.v1alpha1 import GPUNodePoolSpec, GPUWorkloadSpec
from rightsizer.core.cost import WorkloadUsage, accrue_cost, workload_cost
from rightsizer.core.cost_annotations import allowed_lag, annotations_are_stale
from rightsizer.core.errors import InvalidMetricQuery, MetricsUnavailable
from rightsizer.core.gpu_catalog import find_gpu_model
from rightsizer.core.gpu_fit import recommend_gpu_fit, recommend_mig_fit
from rightsizer.core.gpu_share import MIG_PREFIX, gpu_share, shares_a_gpu, single_mig_profile, used_gpu_share
from rightsizer.core.idle import IdleAction, IdlePolicy, TrainingAction, decide_training
from rightsizer.core.metrics_view import GpuSample, Hold, HoldCode, UsableMetrics, signal_hint
from rightsizer.core.replicas import ReplicaAction
from rightsizer.core.sample_history import GpuHistory
from rightsizer.core.status import (
    Problem,
    WorkloadObservation,
    cost_state,
    decode_scaling_state,
    encode_scaling_state,
    idle_since,
    workload_status,
)
from rightsizer.core.wording import format_money
from rightsizer.runtime import mapping
from rightsizer.runtime.decision_record import Recorder, decision_record, observed_step
from rightsizer.runtime.events import Event
from rightsizer.runtime.io_time import IoTime
from rightsizer.runtime.replica_step import (
    PodRoles,
    ReplicaInputs,
    decide_inference,
    gpu_metrics,
    pod_roles,
)
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.signal_readings import read_signals
from rightsizer.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

SCALING_STATE = "rightsizer.io/scaling-state"
COST_PER_HOUR = "rightsizer.io/cost-per-hour"
COST_TO_DATE = "rightsizer.io/cost-to-date"
GPU_EFFICIENCY = "rightsizer.io/gpu-efficiency"
CURRENCY = "rightsizer.io/currency"
IDLE_SINCE = "rightsizer.io/idle-since"
MANAGED_BY = "rightsizer.io/managed-by"

# Training workloads without an idle policy are watched with this one: recommending changes nothing.
DEFAULT_IDLE_POLICY = IdlePolicy(
    threshold_percent=5.0, idle_for=timedelta(minutes=30), action=IdleAction.RECOMMEND
)


@dataclass
class WorkloadResult:
    status: dict[str, Any]
    annotations: dict[str, str | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


class SampleBuffer:
    """Recent per-pod samples of each workload, for GPU-fit advice (peaks over an observation window),
    stored compactly (core/sample_history.py).

    In memory only: after a restart the advice simply waits for enough history again."""

    def __init__(self, horizon: timedelta) -> None:
        self._horizon = horizon
        self._by_workload: dict[tuple[str, str], GpuHistory] = {}

    def add(self, key: tuple[str, str], samples: Sequence[GpuSample], now: datetime) -> list[GpuSample]:
        history = self._by_workload.setdefault(key, GpuHistory(self._horizon))
        history.add(samples, now)
        return history.samples()

    def forget(self, key: tuple[str, str]) -> None:
        self._by_workload.pop(key, None)


class ScalingStateMemory:
    """The scaling state this process last wrote, per workload.

    kopf hands a timer the object as its watch last saw it. A pass that starts right after the
    previous one (which overran its interval, e.g. retrying a throttled call) may get the object
    before the watch has delivered that pass's own patch: read from there, the scaling state would
    forget the last scale, and a second one could follow inside the same period. So the newer of the
    object's state and the one last written wins (a later write by another replica is newer)."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def current(self, key: tuple[str, str], on_object: str | None) -> str | None:
        with self._lock:
            written = self._written.get(key)
        if written is None or (on_object is not None and _newest(on_object) > _newest(written)):
            return on_object
        return written

    def wrote(self, key: tuple[str, str], state: str) -> None:
        with self._lock:
            self._written[key] = state

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._written.pop(key, None)


def _newest(state: str) -> datetime:
    history, events = decode_scaling_state(state)
    return max([r.time for r in history] + [e.time for e in events], default=datetime.min.replace(tzinfo=UTC))


class FleetCache:
    """One query per metric per pass for every workload: the first workload of a pass fetches the
    whole fleet's samples, the others within `ttl` reuse them."""

    def __init__(self, ttl: timedelta) -> None:
        self._ttl = ttl
        self._entries: dict[tuple[int, str, int], tuple[datetime, FleetSamples]] = {}
        self._lock = threading.Lock()
        # Always on the same thread: a fleet's answer is tens of MB of short-lived objects, and each
        # thread that parses one keeps its own malloc arena that big (eight workers: eight arenas).
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-metrics")

    def get(self, source: GpuMetricsSource, signal: str, window: int, now: datetime) -> FleetSamples:
        key = (id(source), signal, window)
        with self._lock:  # kopf runs sync timers on a thread pool
            cached = self._entries.get(key)
            # Either side of `now`: the workloads of one pass take their `now` when their timer fires,
            # and a worker thread may get to the cache after a later-firing one has filled it.
            if cached is not None and abs(now - cached[0]) < self._ttl:
                return cached[1]
            samples = self._fetcher.submit(source.fleet_samples, signal, window, "avg").result()
            self._entries[key] = (now, samples)
            return samples


class WorkloadReconciler:
    """Holds the adapters; `reconcile` is called once per GPUWorkload per interval."""

    def __init__(
        self,
        kube: TargetApi,
        sources: Mapping[str, GpuMetricsSource],
        settings: Settings,
        telemetry: Telemetry,
        recorder: Recorder | None = None,
    ) -> None:
        # Adapter calls are timed, so each reconciliation's own CPU work is measured apart from its I/O.
        self._io = IoTime()
        self._kube = self._io.timed(kube)
        self._sources = {name: self._io.timed(source) for name, source in sources.items()}
        self._settings = settings
        self._telemetry = telemetry
        self._recorder = recorder
        self._buffer = SampleBuffer(horizon=timedelta(hours=1))
        self._scaling = ScalingStateMemory()
        # One fetch per interval: kopf runs each workload's timer on its own phase, so the workloads of
        # one pass are spread over the whole interval and share what the first of them fetched.
        self._fleet = FleetCache(ttl=timedelta(seconds=max(1.0, settings.interval_seconds)))

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def forget(self, namespace: str, name: str) -> None:
        self._buffer.forget((namespace, name))
        self._scaling.forget((namespace, name))
        self._telemetry.forget_workload(namespace, name)

    def reconcile(self, body: Mapping[str, Any], now: datetime, view: ClusterView) -> WorkloadResult:
        """One pass over one GPUWorkload, timed: wall clock, and the CPU of our own code."""
        wall, cpu, io = time.perf_counter(), time.thread_time(), self._io.spent()
        try:
            return self._reconcile(body, now, view)
        finally:
            elapsed = time.perf_counter() - wall
            own_cpu = (time.thread_time() - cpu) - (self._io.spent() - io)
            t = self._telemetry
            t.passes.inc()
            t.reconcile_duration.observe(elapsed)
            t.reconcile_cpu.observe(max(own_cpu, 0.0))

    def hold(self, body: Mapping[str, Any], now: datetime, problem: Problem) -> WorkloadResult:
        """A pass that decides nothing because what it would decide on cannot be trusted."""
        meta = body.get("metadata") or {}
        self._telemetry.passes.inc()
        return self._problem(dict(body.get("status") or {}), int(meta.get("generation") or 0), problem, now)

    def _reconcile(self, body: Mapping[str, Any], now: datetime, view: ClusterView) -> WorkloadResult:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        generation = int(meta.get("generation") or 0)
        previous = dict(body.get("status") or {})
        annotations = dict(meta.get("annotations") or {})
        try:
            spec = GPUWorkloadSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            # The CRD's schema refuses most of this; what gets through is reported, not acted on.
            problem = Problem(
                "InvalidSpec",
                "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            )
            return self._problem(previous, generation, problem, now)

        ref = TargetRef(spec.target_ref.api_version, spec.target_ref.kind, spec.target_ref.name)
        reading = time.monotonic()
        try:
            scale = self._kube.read_scale(namespace, ref)
        except TargetNotFound as exc:
            return self._problem(previous, generation, Problem("TargetNotFound", str(exc)), now)
        except TargetNotScalable as exc:
            return self._problem(previous, generation, Problem("TargetNotScalable", str(exc)), now)
        # A read that waited out throttling or an outage (retries) ends well after `now`: decide as of
        # when the metrics are read, or samples fresher than `now` would look like the future.
        if (waited := time.monotonic() - reading) > 1:
            now += timedelta(seconds=waited)

        pods = view.pods(namespace, scale.selector)
        roles = pod_roles(pods, spec, now)
        ready = roles.ready
        labels = view.node_labels([p.node for p in pods if p.node])
        on_shared = frozenset(
            p.name for p in pods if shares_a_gpu(p.gpu_requests, labels.get(p.node or "", {}))
        )
        metrics, gpu_samples = self._metrics(spec, namespace, roles, on_shared, now)
        if isinstance(metrics, Hold):
            on_mig = [
                p.name for p in pods if p.ready and any(r.startswith(MIG_PREFIX) for r in p.gpu_requests)
            ]
            metrics = signal_hint(metrics, mapping.gpu_signal(spec), on_mig)

        conflicts = view.conflicting_autoscalers(namespace, ref) + view.rival_workloads(namespace, name, ref)
        conflict = f"{', '.join(conflicts)} also scales {ref.kind}/{ref.name}" if conflicts else None
        enforce = spec.mode == "Enforce" and not self._settings.dry_run and conflict is None

        result = WorkloadResult(status={})
        decision: Any = None
        new_idle_since = idle_since(previous)
        current = scale.desired
        if conflict is None:
            if spec.workload_type == "Inference":
                decision = self._decide_inference(
                    spec=spec,
                    namespace=namespace,
                    name=name,
                    pods=pods,
                    gpu_samples=gpu_samples,
                    ready=ready,
                    scale=scale,
                    metrics=metrics,
                    annotations=annotations,
                    enforce=enforce,
                    now=now,
                    result=result,
                )
            else:
                training = decide_training(
                    policy=mapping.idle_policy(spec) or DEFAULT_IDLE_POLICY,
                    current=current,
                    metrics=metrics,
                    idle_since=new_idle_since,
                    now=now,
                )
                new_idle_since = training.idle_since
                decision = training
                self._act_training(
                    namespace=namespace,
                    ref=ref,
                    scale=scale,
                    action=training.action,
                    enforce=enforce,
                    since=new_idle_since,
                    result=result,
                )

        fit = None
        if isinstance(metrics, UsableMetrics) and pods:
            history = self._buffer.add((namespace, name), gpu_samples, now)
            per_replica = max((p.gpus for p in pods), default=0)
            product = self._gpu_product(pods, view)
            model = find_gpu_model(product) if product else None
            mig = single_mig_profile([p.gpu_requests for p in pods])
            profile = model.mig_profile(mig) if model and mig else None
            hour, ten_minutes = timedelta(hours=1), timedelta(minutes=10)
            if profile is not None and model is not None:
                fit = recommend_mig_fit(
                    samples=history, model=model, profile=profile, now=now, observation=hour,
                    min_observation=ten_minutes,
                )  # fmt: skip
            elif per_replica:
                fit = recommend_gpu_fit(
                    samples=history, gpus_per_replica=per_replica, model=model, now=now, observation=hour,
                    min_observation=ten_minutes,
                )  # fmt: skip

        cost, accrual = self._cost(spec, pods, metrics, previous, now=now, view=view)
        observation = WorkloadObservation(
            generation=generation,
            enforce=enforce,
            current_replicas=scale.current,
            metrics=metrics,
            decision=decision,
            gpu_fit=fit,
            cost=cost,
            accrual=accrual,
            conflict=conflict,
            idle_since=new_idle_since,
        )
        result.status = workload_status(previous, observation, now)
        try:
            self._cost_annotations(
                namespace=namespace,
                workload=name,
                ref=ref,
                pods=pods,
                scale=scale,
                status=result.status,
                currency=cost.currency if cost else None,
            )
        except KubeApiUnavailable as exc:
            # The pass may have scaled already: failing it here would lose the status and event that
            # say so (the next pass finds nothing left to do). Annotations are rewritten next pass.
            self._telemetry.errors.inc("annotations")
            log.warning("%s/%s: cost annotations not written: %s", namespace, name, exc)
        self._events(previous, result, conflict, metrics)
        self._record(
            namespace=namespace,
            name=name,
            spec=spec,
            scale=scale,
            metrics=metrics,
            decision=decision,
            status=result.status,
        )
        return result

    # -- observe ----------------------------------------------------------------------------------
    def _metrics(
        self, spec: GPUWorkloadSpec, namespace: str, roles: PodRoles, on_shared: frozenset[str], now: datetime
    ) -> tuple[UsableMetrics | Hold, list[GpuSample]]:
        ready = roles.ready
        source = self._sources.get(str(spec.metric.source))
        if source is None:
            return Hold(
                HoldCode.NO_DATA, f"metrics source {spec.metric.source} is not configured in the operator"
            ), []
        if not ready:
            return gpu_metrics({}, roles, on_shared, now, self._max_age())
        try:
            if spec.metric.query:
                samples = source.custom_pod_samples(spec.metric.query, namespace, ready)
            else:
                window = int(spec.metric.window.total_seconds())
                fleet = self._fleet.get(source, mapping.gpu_signal(spec), window, now)
                samples = {pod: fleet[(namespace, pod)] for pod in ready if (namespace, pod) in fleet}
        except MetricsUnavailable as exc:
            self._telemetry.errors.inc("metrics")
            return Hold(HoldCode.NO_DATA, str(exc)), []
        except InvalidMetricQuery as exc:
            # The user's PromQL template is broken: say so in status; never send it to Prometheus.
            return Hold(HoldCode.INVALID, str(exc)), []
        metrics, gpu_samples = gpu_metrics(samples, roles, on_shared, now, self._max_age())
        return name_failing_endpoints(metrics, source), gpu_samples

    def _max_age(self) -> timedelta:
        return timedelta(seconds=self._settings.max_metric_age)

    def _gpu_product(self, pods: Sequence[PodInfo], view: ClusterView) -> str | None:
        nodes = [p.node for p in pods if p.node]
        for labels in view.node_labels(nodes[:1]).values():
            return labels.get("nvidia.com/gpu.product")
        return None

    # -- decide and act ---------------------------------------------------------------------------
    def _decide_inference(
        self,
        *,
        spec: GPUWorkloadSpec,
        namespace: str,
        name: str,
        pods: Sequence[PodInfo],
        gpu_samples: Sequence[GpuSample],
        ready: list[str],
        scale: Scale,
        metrics: UsableMetrics | Hold,
        annotations: Mapping[str, str],
        enforce: bool,
        now: datetime,
        result: WorkloadResult,
    ) -> Any:
        key = (namespace, name)
        history, events = decode_scaling_state(self._scaling.current(key, annotations.get(SCALING_STATE)))
        wake_signal = None
        if spec.wake_up is not None:
            source = self._sources.get("Prometheus") or self._sources.get(str(spec.metric.source))
            if source is not None:
                try:
                    wake_signal = source.scalar(spec.wake_up.query, namespace, ready)
                except MetricsUnavailable:
                    wake_signal = None
        prometheus = self._sources.get("Prometheus")
        readings = read_signals(
            prometheus, spec.metrics or (), namespace=namespace, pods=ready, now=now, max_age=self._max_age()
        )
        inputs = ReplicaInputs(scale.desired, metrics, ready, readings, wake_signal, now)
        outcome = decide_inference(spec, inputs, history, events, self._settings.interval_seconds)
        decision = outcome.decision
        if self._recorder is not None:
            step = observed_step(now, pods, gpu_samples, readings, wake_signal)
            self._recorder(decision_record(f"{namespace}/{name}", spec.to_wire(), step, decision))
        kept_events = events
        if decision.changes_replicas and enforce:
            ref = TargetRef(spec.target_ref.api_version, spec.target_ref.kind, spec.target_ref.name)
            self._kube.set_replicas(namespace, ref, decision.replicas)
            kept_events = outcome.scale_events  # a scale event counts only once it has happened
            result.events.append(Event("Normal", str(decision.action), decision.reason))
        state = encode_scaling_state(outcome.history, kept_events)
        result.annotations[SCALING_STATE] = state
        self._scaling.wrote(key, state)
        return decision

    def _act_training(
        self,
        *,
        namespace: str,
        ref: TargetRef,
        scale: Scale,
        action: TrainingAction,
        enforce: bool,
        since: datetime | None,
        result: WorkloadResult,
    ) -> None:
        if action == TrainingAction.SUSPEND and enforce and scale.desired > 0 and not scale.suspended:
            if scale.can_suspend:
                self._kube.suspend(namespace, ref)
            else:
                self._kube.set_replicas(namespace, ref, 0)
            result.events.append(
                Event("Normal", "Suspended", f"{ref.kind}/{ref.name} idle since {since}; suspended")
            )
        if action in (TrainingAction.ANNOTATE_IDLE, TrainingAction.SUSPEND, TrainingAction.RECOMMEND_SUSPEND):
            if since is not None and scale.annotations.get(IDLE_SINCE) != _iso(since):
                # Annotating is allowed in Recommend mode: it changes nothing that runs.
                self._kube.annotate_target(namespace, ref, {IDLE_SINCE: _iso(since)})
                result.events.append(
                    Event("Warning", "Idle", f"GPUs of {ref.kind}/{ref.name} idle since {_iso(since)}")
                )
        elif scale.annotations.get(IDLE_SINCE):
            self._kube.annotate_target(namespace, ref, {IDLE_SINCE: None})

    # -- cost -------------------------------------------------------------------------------------
    def _cost(
        self,
        spec: GPUWorkloadSpec,
        pods: Sequence[PodInfo],
        metrics: UsableMetrics | Hold,
        previous: Mapping[str, Any],
        *,
        now: datetime,
        view: ClusterView,
    ) -> tuple[Any, Any]:
        running = [p for p in pods if p.node and p.phase == "Running"]
        pool_specs = self._pool_specs(view)
        by_node = view.node_labels([p.node for p in running if p.node])
        pricing, _origin = mapping.workload_pricing(
            spec, pool_specs, list(by_node.values()), self._settings.pricing
        )
        # A time-sliced GPU or a MIG slice is priced as the share of the GPU it reserves.
        shares = {p.name: gpu_share(p.gpu_requests, by_node.get(p.node or "", {})) for p in running}
        usable = metrics if isinstance(metrics, UsableMetrics) else None
        watts = usable.power_watts if usable else None
        usage = WorkloadUsage(
            requested_gpus=sum(shares.values(), Decimal(0)),
            used_gpu_equivalents=used_gpu_share(usable, shares) if usable else None,
            cpu_cores=sum((p.cpu for p in running), Decimal(0)),
            measured_watts=Decimal(str(round(watts, 3))) if watts is not None else None,
        )
        cost = workload_cost(pricing, usage)
        state = cost_state(previous)
        accrual = accrue_cost(
            to_date=state.to_date,
            per_hour=state.per_hour if state.per_hour is not None else cost.per_hour,
            last_accrued_at=state.last_accrued_at,
            now=now,
            max_gap=mapping.max_history_gap(self._settings.interval_seconds),
        )
        return cost, accrual

    def _pool_specs(self, view: ClusterView) -> list[GPUNodePoolSpec]:
        specs = []
        for pool in view.node_pools():
            try:
                specs.append(GPUNodePoolSpec.model_validate(pool.get("spec") or {}))
            except ValidationError:
                continue  # an invalid pool is reported by its own reconciliation
        return specs

    def _cost_annotations(
        self,
        *,
        namespace: str,
        workload: str,
        ref: TargetRef,
        pods: Sequence[PodInfo],
        scale: Scale,
        status: Mapping[str, Any],
        currency: str | None,
    ) -> None:
        cost = status.get("cost") or {}
        if not cost or currency is None:
            return
        per_hour = format_money(Decimal(str(cost.get("perHour", 0))), 4)
        to_date = format_money(Decimal(str(cost.get("toDate", 0))), 4)
        eff = cost.get("gpuEfficiency")
        efficiency = format_money(Decimal(str(eff)), 3) if eff is not None else ""
        wanted = {
            COST_PER_HOUR: per_hour,
            COST_TO_DATE: to_date,
            GPU_EFFICIENCY: efficiency,
            CURRENCY: currency,
        }
        # The running total changes every pass: it is rewritten only once it lags by a few minutes of
        # spending (status has the exact figure), so a steady fleet costs no annotation writes.
        lag = allowed_lag(f"{namespace}/{workload}")
        rate = Decimal(per_hour)
        if annotations_are_stale(scale.annotations, wanted, to_date_key=COST_TO_DATE, per_hour=rate, lag=lag):
            self._kube.annotate_target(namespace, ref, {**wanted, MANAGED_BY: "gpu-rightsizer"})
        # Pods get the same facts, cost-to-date in whole cents.
        pod_values = {
            **wanted,
            COST_TO_DATE: format_money(Decimal(str(cost.get("toDate", 0))), 2),
            WORKLOAD_ANNOTATION: workload,
        }
        for pod in pods:
            if annotations_are_stale(
                pod.annotations, pod_values, to_date_key=COST_TO_DATE, per_hour=rate, lag=lag
            ):
                self._kube.annotate_pod(namespace, pod.name, pod_values)

    # -- describe ---------------------------------------------------------------------------------
    def _problem(
        self, previous: Mapping[str, Any], generation: int, problem: Problem, now: datetime
    ) -> WorkloadResult:
        observation = WorkloadObservation(
            generation=generation,
            enforce=False,
            current_replicas=int((previous.get("replicas") or {}).get("current") or 0),
            metrics=Hold(HoldCode.NO_DATA, problem.message),
            decision=None,
            problem=problem,
        )
        status = workload_status(previous, observation, now)
        result = WorkloadResult(status=status)
        if _condition(previous, "Ready") != ("False", problem.reason):
            result.events.append(Event("Warning", problem.reason, problem.message))
        self._telemetry.decisions.inc("Hold", problem.reason)
        return result

    def _events(
        self,
        previous: Mapping[str, Any],
        result: WorkloadResult,
        conflict: str | None,
        metrics: UsableMetrics | Hold,
    ) -> None:
        if isinstance(metrics, Hold) and _condition(previous, "MetricsAvailable") != (
            "False",
            str(metrics.code),
        ):
            result.events.append(Event("Warning", str(metrics.code), f"holding: {metrics.reason}"))
        if conflict and _condition(previous, "Conflict")[0] != "True":
            result.events.append(Event("Warning", "Conflict", f"not scaling: {conflict}"))
        last = result.status.get("lastDecision") or {}
        before = previous.get("lastDecision") or {}
        recommended = (last.get("action"), last.get("replicas")) != (
            before.get("action"),
            before.get("replicas"),
        )
        if recommended and not result.events and last.get("action") not in (None, "NoChange", "Hold"):
            result.events.append(Event("Normal", f"Recommend{last['action']}", str(last.get("reason", ""))))

    def _record(
        self,
        *,
        namespace: str,
        name: str,
        spec: GPUWorkloadSpec,
        scale: Scale,
        metrics: UsableMetrics | Hold,
        decision: Any,
        status: Mapping[str, Any],
    ) -> None:
        t = self._telemetry
        t.workload_replicas.set(scale.current, namespace, name, str(spec.workload_type))
        t.metrics_unavailable.set(0 if isinstance(metrics, UsableMetrics) else 1, namespace, name)
        if isinstance(metrics, UsableMetrics):
            t.workload_gpu_utilization.set(metrics.aggregate, namespace, name)
        cost = status.get("cost") or {}
        if cost:
            currency = str(cost.get("currency", ""))
            t.workload_cost_per_hour.set(float(cost.get("perHour") or 0), namespace, name, currency)
            t.workload_cost_to_date.set(float(cost.get("toDate") or 0), namespace, name, currency)
            if cost.get("gpuEfficiency") is not None:
                t.workload_gpu_efficiency.set(float(cost["gpuEfficiency"]), namespace, name)
        if decision is not None:
            reason = str(metrics.code) if isinstance(metrics, Hold) else _reason_code(decision)
            t.decisions.inc(str(decision.action), reason)


def _reason_code(decision: Any) -> str:
    if getattr(decision, "code", None):
        return str(decision.code)
    action = decision.action
    if action in (ReplicaAction.SCALE_UP, ReplicaAction.SCALE_DOWN):
        return "UtilizationVsTarget"
    if action in (ReplicaAction.SCALE_TO_ZERO, TrainingAction.SUSPEND, TrainingAction.ANNOTATE_IDLE):
        return "Idle"
    if action == ReplicaAction.WAKE_UP:
        return "WakeUpSignal"
    return "WithinTolerance"


def _condition(status: Mapping[str, Any], kind: str) -> tuple[str | None, str | None]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status"), cond.get("reason")
    return None, None


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
