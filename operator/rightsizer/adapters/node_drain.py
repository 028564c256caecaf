"""The Kubernetes edge of draining a node: read it and its pods live, annotate and taint it, evict
through the Eviction API (so the API server enforces PodDisruptionBudgets too), watch replacements.

Objects come back as the core's snapshot types, so the executor re-validates a step with the very
rules the planner used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget, Taint, snapshot_from_document

EVENT_NAMESPACE = "default"  # where the API server keeps events about cluster-scoped Nodes
COMPONENT = "gpu-rightsizer"


class Eviction(StrEnum):
    EVICTED = "evicted"
    GONE = "gone"  # the pod no longer exists: nothing to evict
    BLOCKED = "blocked"  # refused, e.g. 429 from a PodDisruptionBudget


@dataclass(frozen=True)
class EvictionResult:
    outcome: Eviction
    message: str = ""


def _load(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.data)
    return document


class KubeNodeDrain:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)
        self._policy = client.PolicyV1Api(api)
        self._apps = client.AppsV1Api(api)

    # -- reads ------------------------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        try:
            raw = _load(self._core.read_node(name, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return snapshot_from_document({"kind": "List", "items": [{**raw, "kind": "Node"}]}).nodes[0]

    def nodes(self) -> tuple[Node, ...]:
        listed = _load(self._core.list_node(_preload_content=False))
        items = [{**n, "kind": "Node"} for n in listed.get("items") or []]
        return snapshot_from_document({"kind": "List", "items": items}).nodes

    def nodes_annotated(self, key: str) -> list[Node]:
        return [n for n in self.nodes() if key in n.annotations]

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        listed = _load(
            self._core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}", _preload_content=False
            )
        )
        items = [{**p, "kind": "Pod"} for p in listed.get("items") or []]
        return snapshot_from_document({"kind": "List", "items": items}).pods

    def pdbs(self, namespaces: Sequence[str]) -> tuple[PodDisruptionBudget, ...]:
        items: list[dict[str, Any]] = []
        for namespace in sorted(set(namespaces)):
            listed = _load(
                self._policy.list_namespaced_pod_disruption_budget(namespace, _preload_content=False)
            )
            items.extend({**p, "kind": "PodDisruptionBudget"} for p in listed.get("items") or [])
        return snapshot_from_document({"kind": "List", "items": items}).pdbs

    # -- writes -----------------------------------------------------------------------------------

    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None:
        self._core.patch_node(node, {"metadata": {"annotations": dict(annotations)}})

    def set_taint(self, node: str, taint: Taint, present: bool) -> None:
        raw = _load(self._core.read_node(node, _preload_content=False))
        taints = [t for t in (raw.get("spec") or {}).get("taints") or [] if t.get("key") != taint.key]
        if present:
            taints.append({"key": taint.key, "value": taint.value, "effect": taint.effect})
        # The resourceVersion makes a concurrent change to the taints fail instead of being lost.
        body = {
            "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
            "spec": {"taints": taints},
        }
        self._core.patch_node(node, body)

    def evict(self, pod: Pod) -> EvictionResult:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace))
        try:
            self._core.create_namespaced_pod_eviction(pod.name, pod.namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                return EvictionResult(Eviction.GONE)
            return EvictionResult(Eviction.BLOCKED, f"{exc.status} {_message(exc)}")
        return EvictionResult(Eviction.EVICTED)

    def replacements_ready(self, evicted: Sequence[Pod], drained_node: str) -> tuple[bool, str]:
        """True once every evicted pod's controller has all its replicas Running and Ready elsewhere
        (and available, so minReadySeconds is honoured); pods without a known controller must be gone."""
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for namespace in {p.namespace for p in evicted}:
            listed = _load(self._core.list_namespaced_pod(namespace, _preload_content=False))
            by_namespace[namespace] = list(listed.get("items") or [])
        seen: set[tuple[str, str, str]] = set()
        for pod in evicted:
            owner = pod.controller
            pods = by_namespace[pod.namespace]
            if owner is None or owner.kind not in ("ReplicaSet", "StatefulSet", "ReplicationController"):
                if any(p["metadata"]["name"] == pod.name for p in pods):
                    return False, f"pod {pod.key} is still terminating"
                continue
            key = (pod.namespace, owner.kind, owner.name)
            if key in seen:
                continue
            seen.add(key)
            wanted, available = self._replicas(pod.namespace, owner.kind, owner.name)
            running = sum(1 for p in pods if _serves(p, owner.kind, owner.name, drained_node))
            if running < wanted or available < wanted:
                return False, (
                    f"{owner.kind} {pod.namespace}/{owner.name}: {running}/{wanted} replicas "
                    f"Running and Ready elsewhere, {available}/{wanted} available"
                )
        return True, "all replacements Running"

    def _replicas(self, namespace: str, kind: str, name: str) -> tuple[int, int]:
        obj: Any
        if kind == "ReplicaSet":
            obj = self._apps.read_namespaced_replica_set(name, namespace)
        elif kind == "StatefulSet":
            obj = self._apps.read_namespaced_stateful_set(name, namespace)
        else:
            obj = self._core.read_namespaced_replication_controller(name, namespace)
        wanted = int(obj.spec.replicas if obj.spec.replicas is not None else 1)
        status = obj.status
        available = getattr(status, "available_replicas", None)
        if available is None:
            available = getattr(status, "ready_replicas", None)
        return wanted, int(available or 0)

    def event(self, node: str, type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{node}.", namespace=EVENT_NAMESPACE),
            involved_object=client.V1ObjectReference(kind="Node", name=node, api_version="v1"),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=client.V1EventSource(component=COMPONENT),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
        )
        self._core.create_namespaced_event(EVENT_NAMESPACE, body)


def _serves(pod: Mapping[str, Any], kind: str, name: str, drained_node: str) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    owners = meta.get("ownerReferences") or []
    if not any(o.get("controller") and o.get("kind") == kind and o.get("name") == name for o in owners):
        return False
    if (pod.get("spec") or {}).get("nodeName") in (None, "", drained_node):
        return False
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return status.get("phase") == "Running" and ready


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
