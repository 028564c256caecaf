"""Observe, the first step of a workload pass: everything its decision and the description of that
decision are made from, read through the adapters into one frozen :class:`Observation`.

Request signals, the wake-up query and the stored scaling state are read only for an inference
workload that no other autoscaler scales: nothing else is decided on them, and each is a query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from rightsizer.adapters.cluster_view import ClusterView
from rightsizer.adapters.kube import PodInfo, Scale, TargetApi, TargetNotFound, TargetNotScalable, TargetRef
from rightsizer.adapters.metrics.base import GpuMetricsSource, name_failing_endpoints
from rightsizer.adapters.workload_kinds import kind_for
from rightsizer.api.v1alpha1 import GPUNodePoolSpec, GPUWorkloadSpec
from rightsizer.core.errors import InvalidMetricQuery, MetricsUnavailable
from rightsizer.core.gpu_share import MIG_PREFIX, shares_a_gpu
from rightsizer.core.metrics_view import GpuSample, Hold, HoldCode, UsableMetrics, signal_hint
from rightsizer.core.replicas import Recommendation
from rightsizer.core.scaling_rate import ScaleEvent
from rightsizer.core.scaling_signals import SignalReading
from rightsizer.core.status import Problem, decode_scaling_state, idle_since
from rightsizer.runtime import mapping
from rightsizer.runtime.replica_step import PodRoles, gpu_metrics, pod_roles
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.signal_readings import read_signals
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workload_memory import SCALING_STATE, FleetCache, SampleBuffer, ScalingStateMemory


@dataclass(frozen=True)
class WorkloadHeader:
    """The GPUWorkload as the pass was handed it: which one, its spec as stored, and its status."""

    namespace: str
    name: str
    generation: int
    spec: Mapping[str, Any]
    previous: Mapping[str, Any]
    """The stored status: the condition transitions, cost accumulator and idle clock go on from it."""
    annotations: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def read_header(body: Mapping[str, Any]) -> WorkloadHeader:
    meta = body.get("metadata") or {}
    return WorkloadHeader(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        generation=int(meta.get("generation") or 0),
        spec=body.get("spec") or {},
        previous=dict(body.get("status") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


@dataclass(frozen=True)
class InferenceReadings:
    """What only a replica decision reads."""

    history: tuple[Recommendation, ...]
    """The stabilisation windows' recommendations, as stored (or as this process last wrote them)."""
    scale_events: tuple[ScaleEvent, ...]
    """The recent scales the rate limits count."""
    readings: Mapping[str, SignalReading]
    """The request signals, keyed by name."""
    wake_signal: float | None


@dataclass(frozen=True)
class Observation:
    """What one pass saw of a workload, its target and their surroundings."""

    header: WorkloadHeader
    spec: GPUWorkloadSpec
    ref: TargetRef
    now: datetime
    """When the metrics were read: later than the pass's start when reading the target waited."""
    scale: Scale
    pods: Sequence[PodInfo]
    roles: PodRoles
    metrics: UsableMetrics | Hold
    gpu_samples: Sequence[GpuSample]
    conflict: str | None
    """Who else scales the target; nothing is decided while someone does."""
    idle_since: datetime | None
    """The idle clock as status kept it."""
    inference: InferenceReadings | None
    """None for a training workload, and for one that another autoscaler scales."""
    fit_samples: Sequence[GpuSample] | None
    """The last hour of samples GPU-fit advice reads; None when the metrics give no advice."""
    gpu_product: str | None
    """The GPU model of the first pod's node, for GPU-fit advice."""
    running_node_labels: Mapping[str, Mapping[str, str]]
    """The labels of the nodes that run the Running pods, for prices and GPU shares."""
    pool_specs: Sequence[GPUNodePoolSpec]

    @property
    def running(self) -> list[PodInfo]:
        return _running(self.pods)


class WorkloadObserver:
    """Reads one workload's world through the adapters; what is kept between passes is handed in."""

    def __init__(
        self,
        kube: TargetApi,
        sources: Mapping[str, GpuMetricsSource],
        settings: Settings,
        telemetry: Telemetry,
    ) -> None:
        self._kube = kube
        self._sources = sources
        self._settings = settings
        self._telemetry = telemetry

    def observe(
        self,
        header: WorkloadHeader,
        now: datetime,
        view: ClusterView,
        *,
        fleet: FleetCache,
        samples: SampleBuffer,
        scaling: ScalingStateMemory,
        monotonic: Callable[[], float],
    ) -> Observation | Problem:
        """What the pass decides on, or the problem that stops it from deciding anything."""
        namespace, name = header.key
        try:
            spec = GPUWorkloadSpec.model_validate(header.spec)
        except ValidationError as exc:
            # The CRD's schema refuses most of this; what gets through is reported, not acted on.
            return Problem(
                "InvalidSpec",
                "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            )

        ref = TargetRef(spec.target_ref.api_version, spec.target_ref.kind, spec.target_ref.name)
        reading = monotonic()
        try:
            scale = self._kube.read_scale(namespace, ref)
        except TargetNotFound as exc:
            return Problem("TargetNotFound", str(exc))
        except TargetNotScalable as exc:
            return Problem("TargetNotScalable", str(exc))
        # A read that waited out throttling or an outage (retries) ends well after `now`: decide as of
        # when the metrics are read, or samples fresher than `now` would look like the future.
        if (waited := monotonic() - reading) > 1:
            now += timedelta(seconds=waited)

        pods = _workload_pods(view, namespace, scale.selectors)
        if not scale.can_scale:
            # A kind with no replica count (a JobSet, a RayCluster of several groups) runs as its pods.
            live = sum(1 for p in pods if p.phase in ("Pending", "Running") and not p.deleting)
            scale = replace(scale, desired=live, current=live)
        roles = pod_roles(pods, spec, now)
        labels = view.node_labels([p.node for p in pods if p.node])
        on_shared = frozenset(
            p.name for p in pods if shares_a_gpu(p.gpu_requests, labels.get(p.node or "", {}))
        )
        metrics, gpu_samples = self._metrics(spec, namespace, roles, on_shared, now, fleet)
        if isinstance(metrics, Hold):
            on_mig = [
                p.name for p in pods if p.ready and any(r.startswith(MIG_PREFIX) for r in p.gpu_requests)
            ]
            metrics = signal_hint(metrics, mapping.gpu_signal(spec), on_mig)

        conflicts = view.conflicting_autoscalers(namespace, ref) + view.rival_workloads(namespace, name, ref)
        for api_version, kind, child in kind_for(ref.group, ref.kind).child_targets(ref.name):
            on_child = view.conflicting_autoscalers(namespace, TargetRef(api_version, kind, child))
            conflicts.extend(f"{scaler} (on its {kind} {child})" for scaler in on_child)
        if scale.scaled_by is not None:
            conflicts.append(scale.scaled_by)
        conflict = f"{', '.join(conflicts)} also scales {ref.kind}/{ref.name}" if conflicts else None
        inference = None
        if spec.workload_type == "Inference" and conflict is None:
            inference = self._inference_readings(header, spec, roles.ready, now, scaling)

        fit_samples, product = None, None
        if isinstance(metrics, UsableMetrics) and pods:
            fit_samples = samples.add(header.key, gpu_samples, now)
            product = _gpu_product(pods, view)
        running_nodes = [p.node for p in _running(pods) if p.node]
        return Observation(
            header=header,
            spec=spec,
            ref=ref,
            now=now,
            scale=scale,
            pods=pods,
            roles=roles,
            metrics=metrics,
            gpu_samples=gpu_samples,
            conflict=conflict,
            idle_since=idle_since(header.previous),
            inference=inference,
            fit_samples=fit_samples,
            gpu_product=product,
            running_node_labels=view.node_labels(running_nodes),
            pool_specs=_pool_specs(view),
        )

    def _inference_readings(
        self,
        header: WorkloadHeader,
        spec: GPUWorkloadSpec,
        ready: Sequence[str],
        now: datetime,
        scaling: ScalingStateMemory,
    ) -> InferenceReadings:
        history, events = decode_scaling_state(
            scaling.current(header.key, header.annotations.get(SCALING_STATE))
        )
        wake_signal = None
        if spec.wake_up is not None:
            source = self._sources.get("Prometheus") or self._sources.get(str(spec.metric.source))
            if source is not None:
                try:
                    wake_signal = source.scalar(spec.wake_up.query, header.namespace, ready)
                except MetricsUnavailable:
                    wake_signal = None
        readings = read_signals(
            self._sources.get("Prometheus"),
            spec.metrics or (),
            namespace=header.namespace,
            pods=ready,
            now=now,
            max_age=self._max_age(),
        )
        return InferenceReadings(history, events, readings, wake_signal)

    def _metrics(  # noqa: PLR0917 - one read and everything it depends on
        self,
        spec: GPUWorkloadSpec,
        namespace: str,
        roles: PodRoles,
        on_shared: frozenset[str],
        now: datetime,
        fleet: FleetCache,
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
                fleet_samples = fleet.get(source, mapping.gpu_signal(spec), window, now)
                samples = {
                    pod: fleet_samples[(namespace, pod)] for pod in ready if (namespace, pod) in fleet_samples
                }
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


def _workload_pods(view: ClusterView, namespace: str, selectors: Sequence[str]) -> list[PodInfo]:
    """The pods any of the target's selectors match, each once, in the order first found."""
    found: dict[str, PodInfo] = {}
    for selector in selectors:
        for pod in view.pods(namespace, selector):
            found.setdefault(pod.name, pod)
    return list(found.values())


def _running(pods: Sequence[PodInfo]) -> list[PodInfo]:
    return [p for p in pods if p.node and p.phase == "Running"]


def _gpu_product(pods: Sequence[PodInfo], view: ClusterView) -> str | None:
    nodes = [p.node for p in pods if p.node]
    for labels in view.node_labels(nodes[:1]).values():
        return labels.get("nvidia.com/gpu.product")
    return None


def _pool_specs(view: ClusterView) -> list[GPUNodePoolSpec]:
    specs = []
    for pool in view.node_pools():
        try:
            specs.append(GPUNodePoolSpec.model_validate(pool.get("spec") or {}))
        except ValidationError:
            continue  # an invalid pool is reported by its own reconciliation
    return specs
