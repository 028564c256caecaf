"""What the workload loop reads about the cluster, answered from in-memory indexes.

`adapters/cluster_cache.py` keeps each index current from one list and one watch per resource kind,
so a pass over a thousand GPUWorkloads costs no list requests: only the target reads and the writes go
to the API server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rightsizer.adapters.kube import PodInfo, TargetRef, pod_info
from rightsizer.core.matching import selector_matches
from rightsizer.core.selectors import parse_selector


class ClusterView(Protocol):
    def pods(self, namespace: str, selector: str) -> list[PodInfo]: ...

    def node_labels(self, names: Sequence[str]) -> dict[str, dict[str, str]]: ...

    def conflicting_autoscalers(self, namespace: str, ref: TargetRef) -> list[str]: ...

    def rival_workloads(self, namespace: str, name: str, ref: TargetRef) -> list[str]: ...

    def node_pools(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class ScalerRef:
    """An HPA, ScaledObject, Knative PodAutoscaler or GPUWorkload pointing at a target."""

    owner: str  # e.g. HorizontalPodAutoscaler/web
    kind: str
    name: str
    group: str
    created: str = ""


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


# -- index functions: body -> {key: value}; kopf calls them on every watch event ----------------------
def index_pod(body: Mapping[str, Any]) -> dict[str, PodInfo]:
    phase = (body.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return {}
    return {str((body.get("metadata") or {}).get("namespace")): pod_info(body)}


def index_node(body: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    meta = body.get("metadata") or {}
    return {str(meta.get("name")): dict(meta.get("labels") or {})}


def _by_scale_target(body: Mapping[str, Any], owner: str, default_kind: str = "") -> dict[str, ScalerRef]:
    """An autoscaler that names its target in ``spec.scaleTargetRef``, keyed by its namespace."""
    meta, target = body.get("metadata") or {}, (body.get("spec") or {}).get("scaleTargetRef") or {}
    ref = ScalerRef(
        f"{owner}/{meta.get('name')}",
        str(target.get("kind") or default_kind),
        str(target.get("name", "")),
        # KEDA's ScaledObject defaults its target to an apps/v1 Deployment.
        _group(str(target.get("apiVersion") or ("apps/v1" if default_kind else ""))),
    )
    return {str(meta.get("namespace")): ref}


def index_hpa(body: Mapping[str, Any]) -> dict[str, ScalerRef]:
    return _by_scale_target(body, "HorizontalPodAutoscaler")


def index_scaled_object(body: Mapping[str, Any]) -> dict[str, ScalerRef]:
    return _by_scale_target(body, "ScaledObject", default_kind="Deployment")


def index_pod_autoscaler(body: Mapping[str, Any]) -> dict[str, ScalerRef]:
    # Knative scales a revision's Deployment through its PodAutoscaler (KServe's serverless mode
    # among others): whoever targets that Deployment would fight Knative's autoscaler.
    return _by_scale_target(body, "PodAutoscaler")


def index_workload(body: Mapping[str, Any]) -> dict[str, ScalerRef]:
    meta, target = body.get("metadata") or {}, (body.get("spec") or {}).get("targetRef") or {}
    ref = ScalerRef(
        f"GPUWorkload/{meta.get('name')}",
        str(target.get("kind", "")),
        str(target.get("name", "")),
        _group(str(target.get("apiVersion", ""))),
        str(meta.get("creationTimestamp", "")),
    )
    return {str(meta.get("namespace")): ref}


def index_pool(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {"pools": dict(body)}


class IndexedView:
    """A ClusterView over in-memory indexes (mappings of key -> collection of values)."""

    def __init__(
        self,
        *,
        pods: Mapping[str, Iterable[PodInfo]],
        nodes: Mapping[str, Iterable[dict[str, str]]],
        hpas: Mapping[str, Iterable[ScalerRef]],
        scaled_objects: Mapping[str, Iterable[ScalerRef]],
        workloads: Mapping[str, Iterable[ScalerRef]],
        pools: Mapping[str, Iterable[dict[str, Any]]],
        pod_autoscalers: Mapping[str, Iterable[ScalerRef]] | None = None,
    ) -> None:
        self._pods, self._nodes, self._hpas = pods, nodes, hpas
        self._scaled, self._workloads, self._pools = scaled_objects, workloads, pools
        self._knative = pod_autoscalers or {}

    def pods(self, namespace: str, selector: str) -> list[PodInfo]:
        if not selector.strip():
            return []  # a target without a selector has no pods
        parsed = parse_selector(selector)  # once, not once per pod of the namespace
        return [p for p in self._pods.get(namespace, ()) if selector_matches(parsed, p.labels)]

    def node_labels(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name in set(names):
            for labels in self._nodes.get(name, ()):
                out[name] = labels
        return out

    def conflicting_autoscalers(self, namespace: str, ref: TargetRef) -> list[str]:
        found = [
            *self._hpas.get(namespace, ()),
            *self._scaled.get(namespace, ()),
            *self._knative.get(namespace, ()),
        ]
        return sorted(s.owner for s in found if (s.kind, s.name, s.group) == (ref.kind, ref.name, ref.group))

    def rival_workloads(self, namespace: str, name: str, ref: TargetRef) -> list[str]:
        same = [
            w
            for w in self._workloads.get(namespace, ())
            if (w.kind, w.name, w.group) == (ref.kind, ref.name, ref.group)
        ]
        mine = next((w for w in same if w.owner == f"GPUWorkload/{name}"), None)
        key = (mine.created, mine.owner) if mine else None
        return [
            w.owner
            for w in sorted(same, key=lambda w: (w.created, w.owner))
            if w is not mine and (key is None or (w.created, w.owner) < key)
        ]

    def node_pools(self) -> list[dict[str, Any]]:
        return list(self._pools.get("pools", ()))
