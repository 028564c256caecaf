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

from rightsizer.adapters.kube_retry import KubeRetry
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
    def __init__(self, namespace: str, ref: TargetRef) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} ({ref.api_version}) does not exist: "
            "create it or fix spec.targetRef"
        )


class ScaleConflict(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef, attempts: int) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} changed {attempts} times while its replicas were set; "
            "something else keeps writing it. The next pass tries again"
        )


class TargetNotScalable(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef, why: str) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} cannot be scaled: {why}; spec.targetRef must name a "
            "resource with a /scale subresource (Deployment, StatefulSet, or a custom resource that has one)"
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
    desired: int
    current: int
    selector: str
    can_suspend: bool = False
    suspended: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)


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
        # (apiVersion, kind) -> the resource serving it, once known to have /scale. Only answers
        # that can be acted on are kept: a kind that is missing now may be installed later.
        self._scalable: dict[tuple[str, str], str] = {}

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

    def _resource(self, namespace: str, ref: TargetRef) -> str:
        """The plural serving `ref.kind`, checked to have a /scale subresource."""
        known = self._scalable.get((ref.api_version, ref.kind))
        if known is not None:
            return known
        group_path = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        try:
            listing = self._call("GET", group_path)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotScalable(
                    namespace, ref, f"the API server serves no {ref.kind} in {ref.api_version}"
                ) from exc
            raise
        resources = [r for r in listing.get("resources") or [] if isinstance(r, dict)]
        names = [str(r.get("name", "")) for r in resources if r.get("kind") == ref.kind]
        plural = next((n for n in names if "/" not in n), None)
        if plural is None:
            raise TargetNotScalable(
                namespace, ref, f"the API server serves no {ref.kind} in {ref.api_version}"
            )
        if not any(r.get("name") == f"{plural}/scale" for r in resources):
            raise TargetNotScalable(namespace, ref, f"{plural} has no /scale subresource")
        self._scalable[(ref.api_version, ref.kind)] = plural
        return plural

    def _scale_path(self, namespace: str, ref: TargetRef) -> str:
        plural = self._resource(namespace, ref)
        prefix = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        return f"{prefix}/namespaces/{namespace}/{plural}/{ref.name}"

    def read_scale(self, namespace: str, ref: TargetRef) -> Scale:
        path = self._scale_path(namespace, ref)
        try:
            obj = self._call("GET", path)
            if (ref.group, ref.kind) in SCALE_IN_OBJECT:
                scale = scale_of(obj)
            else:
                scale = self._call("GET", f"{path}/scale")
        except ApiException as exc:
            if exc.status == 404:
                # The object is missing, or its kind went away (a CRD deleted): ask discovery again.
                self._scalable.pop((ref.api_version, ref.kind), None)
                raise TargetNotFound(namespace, ref) from exc
            raise
        spec = obj.get("spec") or {}
        # A drain's surge (core.surge) is not the workload's count: the loop sees the count without it.
        annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
        if (ref.group, ref.kind) not in SCALE_IN_OBJECT:
            annotations.pop(SURGE_ANNOTATION, None)
        return Scale(
            desired=unsurged(int((scale.get("spec") or {}).get("replicas") or 0), annotations),
            current=unsurged(int((scale.get("status") or {}).get("replicas") or 0), annotations),
            selector=str((scale.get("status") or {}).get("selector") or ""),
            can_suspend="suspend" in spec,
            suspended=bool(spec.get("suspend")),
            annotations=dict((obj.get("metadata") or {}).get("annotations") or {}),
        )

    def set_replicas(self, namespace: str, ref: TargetRef, replicas: int) -> None:
        """Set the workload's count. On a Deployment or StatefulSet a drain may have raised (core.surge):
        then the count goes on top of the surge and into its record, which is what the drain restores.
        Written under the resourceVersion read, so a surge that lands in between is never overwritten."""
        path = self._scale_path(namespace, ref)
        if (ref.group, ref.kind) not in SCALE_IN_OBJECT:
            self._call("PATCH", f"{path}/scale", {"spec": {"replicas": replicas}}, MERGE_PATCH)
            return
        for _ in range(SCALE_CONFLICT_ATTEMPTS):
            meta = self._call("GET", path).get("metadata") or {}
            record = SurgeRecord.from_json((meta.get("annotations") or {}).get(SURGE_ANNOTATION))
            version = {"resourceVersion": meta.get("resourceVersion")}
            try:
                if record is None:
                    body = {"metadata": version, "spec": {"replicas": replicas}}
                    self._call("PATCH", f"{path}/scale", body, MERGE_PATCH)
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
        path = self._scale_path(namespace, ref)
        self._call("PATCH", path, {"spec": {"suspend": suspend}}, "application/merge-patch+json")

    def annotate_target(self, namespace: str, ref: TargetRef, annotations: Mapping[str, str | None]) -> None:
        path = self._scale_path(namespace, ref)
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call("PATCH", path, body, "application/merge-patch+json")

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
