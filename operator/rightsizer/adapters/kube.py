"""The Kubernetes edge for GPUWorkloads: the target's /scale subresource, its pods, conflicting
autoscalers, annotations. Request bodies are built as plain data; every call goes through here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from rightsizer.core.errors import RightsizerError
from rightsizer.core.quantity import parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"


class TargetNotFound(RightsizerError):
    def __init__(self, namespace: str, ref: TargetRef) -> None:
        super().__init__(
            f"{ref.kind} {namespace}/{ref.name} ({ref.api_version}) does not exist: "
            "create it or fix spec.targetRef"
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


def pod_info(body: Mapping[str, Any]) -> PodInfo:
    """What the workload loop needs of a pod, from its JSON body (a watch event or a list item)."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    gpus = 0
    cpu = Decimal(0)
    memory = Decimal(0)
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        gpus += int(parse_quantity(req.get(GPU_RESOURCE, lim.get(GPU_RESOURCE, 0))))
        cpu += parse_quantity(req.get("cpu", 0))
        memory += parse_quantity(req.get("memory", 0))
    ready = any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in status.get("conditions") or []
    ) and not meta.get("deletionTimestamp")
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


class KubeWorkloads:
    """Reads and scales GPU workload targets through the API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._dynamic: DynamicClient | None = None

    # -- the target -----------------------------------------------------------------------------
    def _dyn(self) -> DynamicClient:
        # Built on first use: its discovery requests are only worth making when a target is read.
        if self._dynamic is None:
            self._dynamic = DynamicClient(self._api)
        return self._dynamic

    def _resource(self, namespace: str, ref: TargetRef) -> Any:
        try:
            return self._dyn().resources.get(api_version=ref.api_version, kind=ref.kind)
        except ResourceNotFoundError as exc:
            raise TargetNotScalable(
                namespace, ref, f"the API server serves no {ref.kind} in {ref.api_version}"
            ) from exc

    def _scale_path(self, namespace: str, ref: TargetRef) -> str:
        resource = self._resource(namespace, ref)
        if "scale" not in (resource.subresources or {}):
            raise TargetNotScalable(namespace, ref, f"{resource.name} has no /scale subresource")
        prefix = f"/apis/{ref.api_version}" if ref.group else f"/api/{ref.version}"
        return f"{prefix}/namespaces/{namespace}/{resource.name}/{ref.name}"

    def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        params = {"content_type": content_type} if content_type else {}
        response = self._dyn().request(method.lower(), path, body=body, **params)
        return dict(response.to_dict())

    def read_scale(self, namespace: str, ref: TargetRef) -> Scale:
        path = self._scale_path(namespace, ref)
        try:
            scale = self._call("GET", f"{path}/scale")
            obj = self._call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotFound(namespace, ref) from exc
            raise
        spec = obj.get("spec") or {}
        return Scale(
            desired=int((scale.get("spec") or {}).get("replicas") or 0),
            current=int((scale.get("status") or {}).get("replicas") or 0),
            selector=str((scale.get("status") or {}).get("selector") or ""),
            can_suspend="suspend" in spec,
            suspended=bool(spec.get("suspend")),
            annotations=dict((obj.get("metadata") or {}).get("annotations") or {}),
        )

    def set_replicas(self, namespace: str, ref: TargetRef, replicas: int) -> None:
        path = self._scale_path(namespace, ref)
        self._call("PATCH", f"{path}/scale", {"spec": {"replicas": replicas}}, "application/merge-patch+json")

    def suspend(self, namespace: str, ref: TargetRef, suspend: bool = True) -> None:
        path = self._scale_path(namespace, ref)
        self._call("PATCH", path, {"spec": {"suspend": suspend}}, "application/merge-patch+json")

    def annotate_target(self, namespace: str, ref: TargetRef, annotations: Mapping[str, str | None]) -> None:
        path = self._scale_path(namespace, ref)
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call("PATCH", path, body, "application/merge-patch+json")

    # -- pods -----------------------------------------------------------------------------------
    def annotate_pod(self, namespace: str, pod: str, annotations: Mapping[str, str | None]) -> None:
        try:
            self._core.patch_namespaced_pod(pod, namespace, {"metadata": {"annotations": dict(annotations)}})
        except ApiException as exc:
            if exc.status != 404:  # the pod went away between listing and patching: nothing to annotate
                raise


def ensure_cluster_peering(api: client.ApiClient, name: str) -> None:
    """kopf only keeps peers alive in an existing peering object; create it when absent."""
    custom = client.CustomObjectsApi(api)
    try:
        custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
        try:
            custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
        except ApiException as create_exc:
            if create_exc.status != 409:  # another replica created it first
                raise
