"""Reads what ``rightsizer backtest --workload NS/NAME --since D`` replays: the GPUWorkload's spec
(or the one given), the pods its target has now, and the past of its pods from Prometheus. The
cluster is read with the user's own credentials, as every command but ``run`` does.

Everything that cannot be read stops the command with a message naming it: a replay of partial
input would look like an answer and be a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from rightsizer.adapters.kube import KubeWorkloads, TargetNotFound, TargetRef
from rightsizer.adapters.kube_retry import KubeApiUnavailable
from rightsizer.adapters.metrics import promql
from rightsizer.adapters.metrics.history import PrometheusHistory, Window
from rightsizer.api.durations import InvalidDuration, format_duration, parse_duration
from rightsizer.api.v1alpha1 import GPUWorkloadSpec, MetricType, WorkloadType
from rightsizer.core.errors import RightsizerError
from rightsizer.core.timestamps import format_precise
from rightsizer.runtime import mapping
from rightsizer.runtime.backtest import WAKE_UP
from rightsizer.runtime.history import (
    REPLICA_METRICS,
    History,
    NoHistory,
    Signals,
    build_timeline,
    pod_pattern,
    pods_description,
)


class HistoryUnavailable(RightsizerError):
    """The workload, its target or its history could not be read, or a flag is wrong; the message
    says which and why."""


@dataclass(frozen=True)
class HistoryRequest:
    namespace: str
    name: str
    since: timedelta
    step_seconds: int
    max_age: timedelta
    now: datetime
    spec: Mapping[str, Any] | None = None
    """Replay under this spec instead of the GPUWorkload's own."""


@dataclass(frozen=True)
class Read:
    history: History
    window: Window
    pods_found_by: str


def read_history(
    request: HistoryRequest, api: Callable[[], client.ApiClient], prometheus: PrometheusHistory
) -> Read:
    """The timeline to replay; the cluster is read first (the spec names what to ask Prometheus)."""
    window = Window.ending(request.now, request.since, request.step_seconds)
    kube = _connect(api)
    spec = _spec(request.spec if request.spec is not None else _stored_spec(kube, request))
    _check_replayable(spec)
    ref = spec.target_ref
    group = ref.api_version.split("/", 1)[0] if "/" in ref.api_version else ""
    pods_now = _pods_now(kube, request.namespace, TargetRef(ref.api_version, ref.kind, ref.name))
    pattern = pod_pattern(group, ref.kind, ref.name, pods_now)
    found_by = pods_description(group, ref.kind, ref.name)
    where = f"{ref.kind} {request.namespace}/{ref.name}"
    if pattern is None:
        raise HistoryUnavailable(f"{where} has no pods now and its kind no pod-name rule: no pods to read")
    series = prometheus.gpu_series(
        request.namespace, pattern, mapping.gpu_signal(spec), window, request.max_age
    )
    counts: dict[datetime, int] = {}
    replica_metric = REPLICA_METRICS.get((group, ref.kind))
    if replica_metric is not None:
        metric, label = replica_metric
        counts = prometheus.replica_counts(
            metric, label, request.namespace, ref.name, window=window, max_age=request.max_age
        )
    pods_seen = sorted({g.pod for g in series} | set(pods_now))
    signals = _signals(spec, request, pods_seen, window, prometheus) if pods_seen else Signals()
    try:
        history = build_timeline(
            spec,
            series,
            window.times(),
            replica_counts=counts,
            replica_metric=replica_metric[0] if replica_metric else None,
            signals=signals,
        )
    except NoHistory as exc:
        raise HistoryUnavailable(
            f"{exc} in Prometheus over the last {format_duration(request.since)} (pods of {where}: "
            f"{found_by}; signal {mapping.gpu_signal(spec)}): check the workload's name, --since and "
            "the series selector"
        ) from exc
    return Read(history, window, found_by)


def _connect(api: Callable[[], client.ApiClient]) -> client.ApiClient:
    try:
        return api()
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise HistoryUnavailable(f"cannot connect to the cluster: {exc}") from exc


def _stored_spec(api: client.ApiClient, request: HistoryRequest) -> Mapping[str, Any]:
    what = f"GPUWorkload {request.namespace}/{request.name}"
    try:
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "rightsizer.io", "v1alpha1", request.namespace, "gpuworkloads", request.name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise HistoryUnavailable(f"{what} not found (or its CRD is not installed)") from exc
        raise HistoryUnavailable(f"cannot read {what}: {exc.status} {exc.reason}") from exc
    except (OSError, urllib3.exceptions.HTTPError, KubeApiUnavailable) as exc:
        raise HistoryUnavailable(f"cannot read {what}: the API server did not answer ({exc})") from exc
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise HistoryUnavailable(f"{what} has no spec")
    return spec


def _spec(document: Mapping[str, Any]) -> GPUWorkloadSpec:
    try:
        return GPUWorkloadSpec.model_validate(document)
    except ValidationError as exc:
        fields = [".".join(["spec", *(str(p) for p in e["loc"])]) for e in exc.errors()]
        problems = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, exc.errors(), strict=True))
        raise HistoryUnavailable(f"invalid spec: {problems}") from exc


def _check_replayable(spec: GPUWorkloadSpec) -> None:
    """What history cannot replay faithfully is refused rather than replayed as something else."""
    if spec.workload_type is not WorkloadType.INFERENCE:
        raise HistoryUnavailable("spec.workloadType must be Inference: only replica decisions are replayed")
    if spec.metric.query:
        raise HistoryUnavailable(
            "spec.metric.query: a custom utilisation query is not read from history; record the "
            "operator's inputs with `rightsizer run --record-decisions FILE` and replay them with --input"
        )


def _signals(
    spec: GPUWorkloadSpec,
    request: HistoryRequest,
    pods: Sequence[str],
    window: Window,
    prometheus: PrometheusHistory,
) -> Signals:
    """The request signals and the wake-up query over the window, each rendered as a pass renders
    it ({{pods}}: here every pod of the window, whose series exist only while they did)."""
    per_pod: dict[str, Mapping[str, Mapping[datetime, float]]] = {}
    scalars: dict[str, Mapping[datetime, float]] = {}
    namespace, max_age = request.namespace, request.max_age
    for metric in spec.metrics or ():
        if metric.type is MetricType.GPU or metric.name is None or metric.query is None:
            continue
        query = promql.render_template(metric.query, namespace=namespace, pods=pods)
        if metric.type is MetricType.PODS:
            per_pod[metric.name] = prometheus.pod_values(query, namespace, window, max_age)
        else:
            scalars[metric.name] = prometheus.scalar_values(query, window, max_age)
    if spec.wake_up is not None:
        query = promql.render_template(spec.wake_up.query, namespace=namespace, pods=pods)
        scalars[WAKE_UP] = prometheus.scalar_values(query, window, max_age)
    return Signals(per_pod, scalars)


def _pods_now(api: client.ApiClient, namespace: str, ref: TargetRef) -> list[str]:
    """The target's pods now, by its selectors; none when the target is gone (its pods' names
    still find its history)."""
    try:
        scale = KubeWorkloads(api).read_scale(namespace, ref)
        core = client.CoreV1Api(api)
        names: set[str] = set()
        for selector in scale.selectors:
            if not selector:  # an empty selector matches every pod of the namespace
                continue
            listed = core.list_namespaced_pod(namespace, label_selector=selector)
            names.update(str(p.metadata.name) for p in listed.items)
        return sorted(names)
    except TargetNotFound:
        return []
    except RightsizerError as exc:
        raise HistoryUnavailable(str(exc)) from exc
    except ApiException as exc:
        raise HistoryUnavailable(
            f"cannot list the pods of {ref.kind} {namespace}/{ref.name}: {exc.status} {exc.reason}"
        ) from exc
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise HistoryUnavailable(f"cannot read {ref.kind} {namespace}/{ref.name}: {exc}") from exc


_WEEKS_DAYS = re.compile(r"^(?:([0-9]+)w)?(?:([0-9]+)d)?(.*)$")


def parse_span(flag: str, text: str) -> timedelta:
    """A duration as Prometheus users write one: weeks and days (``7d``, ``1w2d``) before the
    operator's own units (``12h``, ``30m``, ``1h30m``)."""
    found = _WEEKS_DAYS.match(text.strip())
    weeks, days, rest = found.groups() if found else (None, None, text)
    try:
        value = timedelta(weeks=int(weeks or 0), days=int(days or 0))
        value += parse_duration(rest) if rest else timedelta(0)
    except InvalidDuration as exc:
        raise HistoryUnavailable(f"{flag} {text!r}: not a duration such as 7d, 12h, 30m or 1h30m") from exc
    if value <= timedelta(0):
        raise HistoryUnavailable(f"{flag} {text!r}: must be longer than zero")
    return value


def parse_workload(text: str | None) -> tuple[str, str]:
    namespace, _, name = (text or "").partition("/")
    if not namespace or not name or "/" in name:
        raise HistoryUnavailable(
            "--since needs --workload NAMESPACE/NAME, the GPUWorkload whose history to replay"
        )
    return namespace, name


def notes(read: Read, url: str) -> dict[str, Any]:
    """Where the timeline came from: the "history" object of the JSON output."""
    history = read.history
    return {
        "prometheus": url,
        "from": format_precise(read.window.start),
        "to": format_precise(read.window.end),
        "step": format_duration(timedelta(seconds=read.window.step_seconds)),
        "firstData": format_precise(history.first_data),
        "steps": len(history.timeline.steps),
        "pods": list(history.pods),
        "podsFoundBy": read.pods_found_by,
        "replicasFrom": history.replicas_from,
    }


def notes_text(document: Mapping[str, Any]) -> str:
    pods = list(document["pods"])
    shown = ", ".join(pods[:5]) + (f" (+{len(pods) - 5} more)" if len(pods) > 5 else "")
    return "\n".join(
        [
            f"history: {document['prometheus']}, {document['from']} to {document['to']} every "
            f"{document['step']} ({document['steps']} steps from the first sample, {document['firstData']})",
            f"pods: {len(pods)} with GPU series ({shown}), found by {document['podsFoundBy']}",
            f"replicas that ran: {document['replicasFrom']}",
        ]
    )
