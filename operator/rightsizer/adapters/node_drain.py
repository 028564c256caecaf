"""The Kubernetes edge of draining a node: read it and its pods live, annotate and taint it, evict
through the Eviction API (so the API server enforces PodDisruptionBudgets too), watch replacements.

Objects come back as the core's snapshot types, so the executor re-validates a step with the very
rules the planner used. Every call goes through the retry policy (:mod:`kube_retry`): reads and
absolute patches are retried on throttling, 5xx and lost connections; the taint is written with
the node's resourceVersion and re-read on a conflict, so someone else's concurrent taint change is
neither lost nor overwritten.

Evictions are the exception to "retry what is throttled": a 429 that carries a ``DisruptionBudget``
cause is a PodDisruptionBudget saying no, not the API server being busy. Waiting inside the drain for
the budget to allow it would hold a tainted, half-drained node for as long as the application stays
at its limit; the executor rolls the node back instead (BLOCKED) and the next pass re-plans with
the budget as it is then. Other 429s (API Priority and Fairness) and 5xx are retried like any call;
that is safe because each eviction carries the pod's UID as a precondition: a retry can never evict
a newer pod of the same name (StatefulSets reuse names), it finds the pod gone instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.kube_retry import KubeApiUnavailable, KubeRetry, status_causes
from rightsizer.core.errors import RightsizerError
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget, Taint
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.timestamps import parse_time

EVENT_NAMESPACE = "default"  # where the API server keeps events about cluster-scoped Nodes
COMPONENT = "gpu-rightsizer"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TAINT_CONFLICT_ATTEMPTS = 5  # re-reads of a node whose taints keep changing under us
PDB_CAUSE = "DisruptionBudget"

log = logging.getLogger(__name__)


class TaintConflict(RightsizerError):
    """The node's taints kept changing while the operator tried to set its own."""

    def __init__(self, node: str, key: str, attempts: int) -> None:
        super().__init__(
            f"node {node}: its taints changed {attempts} times while setting {key}; someone else is "
            "editing them right now. The operator tries again next pass; if this persists, find the "
            "controller that keeps rewriting the node's taints"
        )


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
    def __init__(self, api: client.ApiClient, retry: KubeRetry | None = None) -> None:
        self._core = client.CoreV1Api(api)
        self._policy = client.PolicyV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._retry = retry or KubeRetry()

    # -- reads ------------------------------------------------------------------------------------

    # Reads come back as raw JSON (no client-side model deserialisation). Each client call is
    # spelled out inside its retry so the RBAC test finds every call the operator makes.

    def _read_node(self, name: str) -> dict[str, Any]:
        return self._retry.call(
            f"GET node {name}", lambda: _load(self._core.read_node(name, _preload_content=False))
        )

    def _patch_node(self, what: str, node: str, body: Mapping[str, Any]) -> None:
        self._retry.call(what, lambda: self._core.patch_node(node, body, _content_type=MERGE_PATCH))

    def node(self, name: str) -> Node | None:
        try:
            raw = self._read_node(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return snapshot_from_document({"kind": "List", "items": [{**raw, "kind": "Node"}]}).nodes[0]

    def nodes(self) -> tuple[Node, ...]:
        listed = self._retry.call("LIST nodes", lambda: _load(self._core.list_node(_preload_content=False)))
        items = [{**n, "kind": "Node"} for n in listed.get("items") or []]
        return snapshot_from_document({"kind": "List", "items": items}).nodes

    def nodes_annotated(self, key: str) -> list[Node]:
        return [n for n in self.nodes() if key in n.annotations]

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        listed = self._retry.call(
            f"LIST pods on node {node}",
            lambda: _load(
                self._core.list_pod_for_all_namespaces(
                    field_selector=f"spec.nodeName={node}", _preload_content=False
                )
            ),
        )
        items = [{**p, "kind": "Pod"} for p in listed.get("items") or []]
        return snapshot_from_document({"kind": "List", "items": items}).pods

    def pdbs(self, namespaces: Sequence[str]) -> tuple[PodDisruptionBudget, ...]:
        items: list[dict[str, Any]] = []
        for namespace in sorted(set(namespaces)):
            listed = self._pdbs_in(namespace)
            items.extend({**p, "kind": "PodDisruptionBudget"} for p in listed.get("items") or [])
        return snapshot_from_document({"kind": "List", "items": items}).pdbs

    def _pdbs_in(self, namespace: str) -> dict[str, Any]:
        return self._retry.call(
            f"LIST poddisruptionbudgets in {namespace}",
            lambda: _load(
                self._policy.list_namespaced_pod_disruption_budget(namespace, _preload_content=False)
            ),
        )

    def _pods_in(self, namespace: str) -> dict[str, Any]:
        return self._retry.call(
            f"LIST pods in {namespace}",
            lambda: _load(self._core.list_namespaced_pod(namespace, _preload_content=False)),
        )

    # -- writes -----------------------------------------------------------------------------------

    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None:
        self._patch_node(
            f"PATCH node {node} annotations", node, {"metadata": {"annotations": dict(annotations)}}
        )

    def swap_annotation(self, node: str, key: str, expected: str, value: str) -> bool:
        """Set annotation ``key`` to ``value`` only if it still reads ``expected`` (a JSON Patch whose
        ``test`` the API server checks in the same write). False when it did not, or the node is gone."""
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        body = [
            {"op": "test", "path": path, "value": expected},
            {"op": "replace", "path": path, "value": value},
        ]
        try:
            self._retry.call(
                f"PATCH node {node} annotation {key} if unchanged",
                lambda: self._core.patch_node(node, body, _content_type=JSON_PATCH),
            )
        except ApiException as exc:
            # 422: the test failed (changed or gone); 404: the node is gone.
            if exc.status in (404, 422):
                return False
            raise
        return True

    def annotate_pod(self, pod: Pod, annotations: Mapping[str, str | None]) -> None:
        """A merge patch of the pod's annotations (the checkpoint handshake); a pod gone is not an error."""
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            self._retry.call(
                f"PATCH pod {pod.key} annotations",
                lambda: self._core.patch_namespaced_pod(pod.name, pod.namespace, body),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def set_taint(self, node: str, taint: Taint, present: bool) -> None:
        """Add (or remove) our taint and leave every other taint as it is. The patch carries the
        resourceVersion it was computed from: a concurrent change makes it fail with 409 instead of
        being overwritten, and then the node is read again and the change re-applied on top."""
        for _ in range(TAINT_CONFLICT_ATTEMPTS):
            raw = self._read_node(node)
            current = list((raw.get("spec") or {}).get("taints") or [])
            others = [t for t in current if t.get("key") != taint.key]
            wanted = {"key": taint.key, "value": taint.value, "effect": taint.effect}
            taints = [*others, wanted] if present else others
            if _same_taints(current, taints):
                return  # already so (e.g. our previous attempt went through but its answer was lost)
            body = {
                "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
                "spec": {"taints": taints},
            }
            try:
                self._patch_node(f"PATCH node {node} taints", node, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
                log.info("taints of node %s changed while setting %s; reading it again", node, taint.key)
        raise TaintConflict(node, taint.key, TAINT_CONFLICT_ATTEMPTS)

    def evict(self, pod: Pod) -> EvictionResult:
        """One eviction through the Eviction API. A PodDisruptionBudget's 429 is an answer (BLOCKED),
        never retried here; throttling and 5xx are retried, the pod's UID making the retry safe."""
        preconditions = client.V1Preconditions(uid=pod.uid) if pod.uid else None
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(preconditions=preconditions),
        )

        def post() -> EvictionResult:
            try:
                self._core.create_namespaced_pod_eviction(pod.name, pod.namespace, body)
            except ApiException as exc:
                if exc.status == 429 and PDB_CAUSE in status_causes(exc):
                    return EvictionResult(Eviction.BLOCKED, f"{exc.status} {_message(exc)}")
                if exc.status == 404:
                    return EvictionResult(Eviction.GONE)
                if exc.status == 409 and pod.uid:
                    # UID precondition failed: the pod we planned for is gone; one of the same name
                    # is a replacement and not ours to evict.
                    return EvictionResult(Eviction.GONE)
                raise
            return EvictionResult(Eviction.EVICTED)

        try:
            return self._retry.call(f"POST eviction of pod {pod.key}", post)
        except ApiException as exc:
            return EvictionResult(Eviction.BLOCKED, f"{exc.status} {_message(exc)}")
        except KubeApiUnavailable as exc:
            return EvictionResult(Eviction.BLOCKED, str(exc))

    def replacements_ready(self, evicted: Sequence[Pod], drained_node: str) -> tuple[bool, str]:
        """True once every evicted pod's controller has all its replicas Running and Ready elsewhere
        (and available, so minReadySeconds is honoured); pods without a known controller must be gone."""
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for namespace in {p.namespace for p in evicted}:
            listed = self._pods_in(namespace)
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
            wanted, min_ready = self._replicas(pod.namespace, owner.kind, owner.name)
            running, available = replicas_serving(
                pods, owner.kind, owner.name, drained_node, min_ready_seconds=min_ready, now=datetime.now(UTC)
            )
            if running < wanted or available < wanted:
                return False, (
                    f"{owner.kind} {pod.namespace}/{owner.name}: {running}/{wanted} replicas "
                    f"Running and Ready elsewhere, {available}/{wanted} available"
                )
        return True, "all replacements Running"

    def _replicas(self, namespace: str, kind: str, name: str) -> tuple[int, int]:
        """The controller's wanted replicas and its minReadySeconds."""

        def read() -> Any:
            if kind == "ReplicaSet":
                return self._apps.read_namespaced_replica_set(name, namespace)
            if kind == "StatefulSet":
                return self._apps.read_namespaced_stateful_set(name, namespace)
            return self._core.read_namespaced_replication_controller(name, namespace)

        obj: Any = self._retry.call(f"GET {kind} {namespace}/{name}", read)
        wanted = int(obj.spec.replicas if obj.spec.replicas is not None else 1)
        return wanted, int(getattr(obj.spec, "min_ready_seconds", None) or 0)

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
        try:
            self._retry.call(
                f"POST event {reason} for node {node}",
                lambda: self._core.create_namespaced_event(EVENT_NAMESPACE, body),
                idempotent=False,
            )
        except (KubeApiUnavailable, ApiException) as exc:
            # An event reports what was done; failing to post it must not undo or abort the doing.
            why = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
            log.warning("event %s for node %s not posted (%s): %s", reason, node, why, message)


def replicas_serving(
    pods: Sequence[Mapping[str, Any]],
    kind: str,
    name: str,
    drained_node: str,
    *,
    min_ready_seconds: int,
    now: datetime,
) -> tuple[int, int]:
    """(Running and Ready, available) pods of controller kind/name on nodes other than the drained one.

    Counted from the pods, not from the controller's status: right after an eviction that status
    still counts the evicted pod as available, and a replacement Ready for a moment would pass for
    one that has honoured minReadySeconds. Available is Kubernetes' own rule: Ready, and Ready for
    longer than minReadySeconds."""
    serving = [p for p in pods if _serves(p, kind, name, drained_node)]
    available = sum(1 for p in serving if _available(p, min_ready_seconds, now))
    return len(serving), available


def _available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    if min_ready_seconds <= 0:
        return True
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    since = parse_time(ready.get("lastTransitionTime"))
    if since is None:
        return False  # no transition time: not known to have been Ready long enough
    return since + timedelta(seconds=min_ready_seconds) < now


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


def _same_taints(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    def key(t: Mapping[str, Any]) -> tuple[str, str, str]:
        return (str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))

    return sorted(map(key, a)) == sorted(map(key, b))


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
