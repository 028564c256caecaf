"""The Kubernetes edge for GPUWorkloads: the target's /scale subresource, its pods, conflicting
autoscalers, annotations. Request bodies are built as plain data; every call goes through here, and
through the retry policy (:mod:`kube_retry`): reads and absolute merge patches are idempotent, so a
throttled or dropped call is simply sent again.

Which resource serves a target's kind is asked of the API server's discovery for that one group
version, with the same retries. (The dynamic client's discovery takes a 503 for "this group serves
nothing" and caches it, which would report a scalable target as unscalable after one bad answer.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters import kueue
from rightsizer.adapters.kube_retry import KubeRetry
from rightsizer.adapters.workload_kinds import KINDS, ReplicasVia, WorkloadKind, kind_for, supported_kinds
from rightsizer.core.errors import RightsizerError
from rightsizer.core.gpu_share import is_gpu_request
from rightsizer.core.quantity import parse_quantity
from rightsizer.core.selectors import format_selector
from rightsizer.core.surge import SURGE_ANNOTATION, SurgeRecord, unsurged
from rightsizer.core.timestamps import parse_time

GPU_RESOURCE = "nvidia.com/gpu"
MERGE_PATCH = "application/merge-patch+json"
SCALE_CONFLICT_ATTEMPTS = 5


class TargetNotFound(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef, why: str = "") -> None:
        what = why or f"{ref.kind} {namespace}/{ref.name} ({ref.api_version}) does not exist"
        super().__init__(f"{what}: create it or fix spec.targetRef")


class ScaleConflict(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef, attempts: int) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} changed {attempts} times while its replicas were set; "
            "something else keeps writing it. The next pass tries again"
        )


class TargetNotScalable(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef, why: str) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} cannot be scaled: {why}; spec.targetRef must name one of "
            f"{supported_kinds()}, or a resource with a /scale subresource"
        )


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/", 1)[-1]


@dataclass(frozen=True)
class Scale:
    """A target as the workload loop sees it, whatever its kind."""

    desired: int
    current: int
    selector: str
    can_suspend: bool = False
    suspended: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    can_scale: bool = True
    pod_selectors: tuple[str, ...] = ()
    """Selectors whose pods together are the workload's; empty: `selector` alone."""
    scaled_by: str | None = None
    """Another autoscaler the target itself turns on."""

    @property
    def selectors(self) -> tuple[str, ...]:
        return self.pod_selectors or (self.selector,)

    @property
    def actions(self) -> str:
        """What the operator can do with the target, as status shows it."""
        can = [name for name, able in (("Scale", self.can_scale), ("Suspend", self.can_suspend)) if able]
        return ",".join(can) or "RecommendOnly"


@dataclass(frozen=True)
class PodInfo:
    name: str
    node: str | None
    phase: str
    ready: bool
    gpus: int
    cpu: Decimal
    memory: Decimal
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    gpu_requests: Mapping[str, Decimal] = field(default_factory=dict)
    """Whole, shared and MIG GPU resources requested, by resource name (what its cost is priced on)."""
    deleting: bool = False
    ready_since: datetime | None = None  # the Ready condition's last transition, when it says

    def warming(self, now: datetime, delay: timedelta) -> bool:
        """Ready for less than ``delay``: not measured yet, as a starting pod. A Ready pod without a
        transition time is taken as warm (the API server always writes one)."""
        return self.ready and self.ready_since is not None and now - self.ready_since < delay

    @property
    def starting(self) -> bool:
        """Not Ready yet and on its way to be: a pod being deleted or that has ended is not starting,
        and, as for HPA, neither damps a scale-up nor keeps its workload from scaling to zero."""
        return not self.ready and not self.deleting and self.phase not in ("Failed", "Succeeded")


def pod_info(body: Mapping[str, Any]) -> PodInfo:
    """What the workload loop needs of a pod, from its JSON body (a watch event or a list item)."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    gpus = 0
    cpu = Decimal(0)
    memory = Decimal(0)
    gpu_requests: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        gpus += int(parse_quantity(req.get(GPU_RESOURCE, lim.get(GPU_RESOURCE, 0))))
        # Extended resources may be written as limits alone; the request then equals the limit.
        for name in {*req, *lim}:
            if is_gpu_request(name):
                amount = parse_quantity(req[name] if name in req else lim[name])
                gpu_requests[name] = gpu_requests.get(name, Decimal(0)) + amount
        cpu += parse_quantity(req.get("cpu", 0))
        memory += parse_quantity(req.get("memory", 0))
    condition: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    ready = condition.get("status") == "True" and not meta.get("deletionTimestamp")
    return PodInfo(
        name=str(meta.get("name", "")),
        node=spec.get("nodeName"),
        phase=str(status.get("phase") or "Unknown"),
        ready=ready,
        gpus=gpus,
        cpu=cpu,
        memory=memory,
        annotations=dict(meta.get("annotations") or {}),
        labels=dict(meta.get("labels") or {}),
        gpu_requests=gpu_requests,
        deleting=bool(meta.get("deletionTimestamp")),
        # Unreadable: taken as warm, never a reason to wait for ever.
        ready_since=parse_time(condition.get("lastTransitionTime")) if ready else None,
    )


class TargetApi(Protocol):
    """What the workload loop does to targets and pods: the only writes it makes."""

    def read_scale(self, namespace: str, ref: TargetRef) -> Scale: ...

    def set_replicas(self, namespace: str, ref: TargetRef, replicas: int) -> None: ...

    def suspend(self, namespace: str, ref: TargetRef, suspend: bool = True) -> None: ...

    def annotate_target(
        self, namespace: str, ref: TargetRef, annotations: Mapping[str, str | None]
    ) -> None: ...

    def annotate_pod(self, namespace: str, pod: str, annotations: Mapping[str, str | None]) -> None: ...


# The API server derives these kinds' Scale from the object itself (spec.replicas, status.replicas,
# spec.selector), so reading the object reads its /scale too: one request per workload and pass, not two.
SCALE_IN_OBJECT = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet")})


def scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The /scale subresource of an apps/v1 Deployment, StatefulSet or ReplicaSet, from the object."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "spec": {"replicas": spec.get("replicas", 1)},  # the API server defaults an absent count to 1
        "status": {
            "replicas": status.get("replicas") or 0,
            "selector": format_selector(spec.get("selector")),
        },
    }


class KubeWorkloads:
    """Reads and scales GPU workload targets through the API server."""

    def __init__(self, api: client.ApiClient, retry: KubeRetry | None = None) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._retry = retry or KubeRetry()
        # (apiVersion, kind) -> the resource serving it and whether it has /scale. Only answers that
        # can be acted on are kept: a kind that is missing now may be installed later.
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    # -- the target -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        """One request as raw JSON, with the client's credentials; non-2xx raises ApiException."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        serialized = self._api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self._api.call_api(*serialized)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else {}

    def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        # Every call made here is a read or an absolute merge patch: safe to send again.
        return dict(
            self._retry.call(f"{method} {path}", lambda: self._request(method, path, body, content_type))
        )

    def _resource(self, namespace: str, ref: TargetRef) -> tuple[str, bool]:
        """The plural serving `ref.kind` and whether it has a /scale subresource. A kind with no
        adapter must have one; a kind the API server does not serve is missing, not unscalable."""
        known = self._resources.get((ref.api_version, ref.kind))
        if known is not None:
            return known
        group_path = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        missing = f"the API server serves no {ref.kind} in {ref.api_version} (is its CRD installed?)"
        try:
            listing = self._call("GET", group_path)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotFound(namespace, ref, missing) from exc
            raise
        resources = [r for r in listing.get("resources") or [] if isinstance(r, dict)]
        names = [str(r.get("name", "")) for r in resources if r.get("kind") == ref.kind]
        plural = next((n for n in names if "/" not in n), None)
        if plural is None:
            raise TargetNotFound(namespace, ref, missing)
        has_scale = any(r.get("name") == f"{plural}/scale" for r in resources)
        if not has_scale and (ref.group, ref.kind) not in KINDS:
            raise TargetNotScalable(namespace, ref, f"{plural} has no /scale subresource")
        self._resources[(ref.api_version, ref.kind)] = (plural, has_scale)
        return plural, has_scale

    def _target(self, namespace: str, ref: TargetRef) -> tuple[str, bool, WorkloadKind]:
        """The object's path, whether its kind has /scale, and the kind's adapter."""
        plural, has_scale = self._resource(namespace, ref)
        prefix = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        path = f"{prefix}/namespaces/{namespace}/{plural}/{ref.name}"
        return path, has_scale, kind_for(ref.group, ref.kind)

    @staticmethod
    def _via(kind: WorkloadKind, obj: Mapping[str, Any], has_scale: bool) -> ReplicasVia:
        via = kind.scalable(obj)
        return ReplicasVia.NONE if via is ReplicasVia.SCALE and not has_scale else via

    def read_scale(self, namespace: str, ref: TargetRef) -> Scale:
        path, has_scale, kind = self._target(namespace, ref)
        scale: Mapping[str, Any] = {}
        try:
            obj = self._call("GET", path)
            via = self._via(kind, obj, has_scale)
            if via is ReplicasVia.SCALE:
                in_object = (ref.group, ref.kind) in SCALE_IN_OBJECT
                scale = scale_of(obj) if in_object else self._call("GET", f"{path}/scale")
        except ApiException as exc:
            if exc.status == 404:
                # The object is missing, or its kind went away (a CRD deleted): ask discovery again.
                self._resources.pop((ref.api_version, ref.kind), None)
                raise TargetNotFound(namespace, ref) from exc
            raise
        # A drain's surge (core.surge) is not the workload's count: the loop sees the count without it.
        annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
        if (ref.group, ref.kind) not in SCALE_IN_OBJECT:
            annotations.pop(SURGE_ANNOTATION, None)
        if via is ReplicasVia.SCALE:
            desired = int((scale.get("spec") or {}).get("replicas") or 0)
            current = int((scale.get("status") or {}).get("replicas") or 0)
        else:
            desired, current = kind.replicas(obj) if via is ReplicasVia.PATH else (0, 0)
        selector = str((scale.get("status") or {}).get("selector") or "")
        selectors = kind.pod_selectors(ref.name, selector, obj)
        can_suspend, suspended, via = kueue.gate(self._call, namespace, kind, obj, via)
        return Scale(
            desired=unsurged(desired, annotations),
            current=unsurged(current, annotations),
            selector=selectors[0],
            can_suspend=can_suspend,
            suspended=suspended,
            annotations=dict((obj.get("metadata") or {}).get("annotations") or {}),
            can_scale=via is not ReplicasVia.NONE,
            pod_selectors=selectors,
            scaled_by=kind.scaled_by(obj),
        )

    def set_replicas(self, namespace: str, ref: TargetRef, replicas: int) -> None:
        """Set the workload's count. On a Deployment or StatefulSet a drain may have raised (core.surge):
        then the count goes on top of the surge and into its record, which is what the drain restores,
        in one write under the resourceVersion read. Without a surge the count alone goes to /scale, as
        a retry-safe write that the controller's own status updates cannot make conflict; a surge that
        lands in between is lost, and its drain then times out waiting and rolls back (fails closed)."""
        path, has_scale, kind = self._target(namespace, ref)
        if (ref.group, ref.kind) not in SCALE_IN_OBJECT:
            obj = self._call("GET", path)
            via = self._via(kind, obj, has_scale)
            if via is ReplicasVia.PATH:
                self._call("PATCH", path, *kind.replicas_patch(obj, replicas))
            elif via is ReplicasVia.SCALE:
                self._call("PATCH", f"{path}/scale", {"spec": {"replicas": replicas}}, MERGE_PATCH)
            else:
                raise TargetNotScalable(namespace, ref, f"a {ref.kind} like this one has no replica count")
            return
        for _ in range(SCALE_CONFLICT_ATTEMPTS):
            meta = self._call("GET", path).get("metadata") or {}
            record = SurgeRecord.from_json((meta.get("annotations") or {}).get(SURGE_ANNOTATION))
            version = {"resourceVersion": meta.get("resourceVersion")}
            try:
                if record is None:
                    self._call("PATCH", f"{path}/scale", {"spec": {"replicas": replicas}}, MERGE_PATCH)
                else:
                    noted = {SURGE_ANNOTATION: record.with_original(replicas).to_json()}
                    body = {
                        "metadata": {**version, "annotations": noted},
                        "spec": {"replicas": replicas + record.surge},
                    }
                    self._call("PATCH", path, body, MERGE_PATCH)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise ScaleConflict(namespace, ref, SCALE_CONFLICT_ATTEMPTS)

    def suspend(self, namespace: str, ref: TargetRef, suspend: bool = True) -> None:
        path, _, kind = self._target(namespace, ref)
        obj = self._call("GET", path) if kind.suspend_path is not None else {}
        if not kueue.set_active(self._call, namespace, kind, obj, not suspend):  # a job Kueue queues
            self._call("PATCH", path, *kind.suspend_patch(suspend))

    def annotate_target(self, namespace: str, ref: TargetRef, annotations: Mapping[str, str | None]) -> None:
        path, _, _ = self._target(namespace, ref)
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call("PATCH", path, body, MERGE_PATCH)

    # -- pods -----------------------------------------------------------------------------------
    def annotate_pod(self, namespace: str, pod: str, annotations: Mapping[str, str | None]) -> None:
        body = {"metadata": {"annotations": dict(annotations)}}

        def patch() -> None:
            # The patched pod is not needed: skipping its decoding into client models saves most of the
            # call's CPU and memory (a fresh fleet annotates thousands of pods in its first pass).
            response = self._core.patch_namespaced_pod(
                pod, namespace, body, _content_type="application/merge-patch+json", _preload_content=False
            )
            response.drain_conn()

        try:
            self._retry.call(f"PATCH pod {namespace}/{pod} annotations", patch)
        except ApiException as exc:
            if exc.status != 404:  # the pod went away between listing and patching: nothing to annotate
                raise


def ensure_cluster_peering(api: client.ApiClient, name: str, retry: KubeRetry | None = None) -> None:
    """kopf only keeps peers alive in an existing peering object; create it when absent."""
    custom = client.CustomObjectsApi(api)
    retry = retry or KubeRetry()
    try:
        retry.call(
            f"GET clusterkopfpeering {name}",
            lambda: custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name),
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
        try:
            # Creating a fixed name twice is harmless (409 below), so it is retried like a read.
            retry.call(
                f"POST clusterkopfpeering {name}",
                lambda: custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body),
            )
        except ApiException as create_exc:
            if create_exc.status != 409:  # another replica created it first
                raise
