"""The planner's Snapshot from the live API server: one list of nodes, pods, PDBs and GPUNodePools per pass.

Objects are read as raw JSON in pages (no client-side model deserialisation, which is slow on
thousands of pods, and never the whole list at once) and handed to the same parser as
`rightsizer plan --snapshot`, so the dry run and the operator see the cluster identically. Each
GPUNodePool goes through ``read_pool`` (the API's model, then the core's policy: given by the caller,
as this layer does not know the runtime's mapping). One that cannot be read is reported, not silently
dropped, and the others are still used: one bad pool must not stop consolidation of the rest. Every
page is retried on throttling, 5xx and lost connections (:mod:`kube_retry`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.kube import (
    SCALE_IN_OBJECT,
    KubeWorkloads,
    TargetNotFound,
    TargetNotScalable,
    TargetRef,
)
from rightsizer.adapters.kube_retry import KubeApiUnavailable, KubeRetry
from rightsizer.core.errors import InvalidPool, RightsizerError
from rightsizer.core.ownership import Owners
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget, Snapshot
from rightsizer.core.snapshot_parsing import snapshot_from_document

GROUP, VERSION, POOL_PLURAL = "rightsizer.io", "v1alpha1", "gpunodepools"
WORKLOAD_PLURAL = "gpuworkloads"


@dataclass(frozen=True)
class ClusterState:
    """One consistent-enough read of the cluster for a consolidation pass."""

    snapshot: Snapshot
    pools: tuple[PoolPolicy, ...]
    pool_documents: Mapping[str, Mapping[str, Any]]  # GPUNodePool objects by name, as read
    pool_errors: Mapping[str, str]  # pools that could not be read, with why
    unschedulable: frozenset[str] = frozenset()  # namespace/name of pods the scheduler could not place
    workloads: tuple[Mapping[str, Any], ...] = ()  # GPUWorkloads' name and spec: what they say of pods
    owners: Owners = field(default_factory=dict)  # ReplicaSets' controllers, for pods' owner chains
    selectors: Mapping[str, str] = field(default_factory=dict)  # GPUWorkload → its target's /scale selector
    unresolved: Mapping[str, str] = field(default_factory=dict)  # GPUWorkload → why its pods are unknown
    # Inputs protection depends on that could not be read (kind → why): drain nothing with pods.
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def unreadable_summary(self) -> str | None:
        """``GPUWorkloads (HTTP 403 Forbidden); …`` for what could not be read, or None."""
        return "; ".join(f"{what} ({why})" for what, why in sorted(self.unreadable.items())) or None


def _json(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.data)
    return document


def unschedulable(pods: Iterable[Mapping[str, Any]]) -> set[str]:
    """Pods the scheduler has tried and failed to place (PodScheduled=False, reason Unschedulable)."""
    keys = set()
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if (pod.get("spec") or {}).get("nodeName") or meta.get("deletionTimestamp"):
            continue
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                keys.add(f"{meta.get('namespace')}/{meta.get('name')}")
    return keys


class ClusterReader:
    """Lists in pages of PAGE and turns each page into planner objects before asking for the next: the
    whole pod list as JSON objects would be ~60 MiB at 5,000 pods, and this runs every pass."""

    PAGE = 500

    def __init__(
        self,
        api: client.ApiClient,
        read_pool: Callable[[Mapping[str, Any]], PoolPolicy],
        retry: KubeRetry | None = None,
    ) -> None:
        self._read_pool = read_pool
        self._core = client.CoreV1Api(api)
        self._policy = client.PolicyV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._apps = client.AppsV1Api(api)
        self._retry = retry or KubeRetry()
        self._targets = KubeWorkloads(api, self._retry)

    def _pages(self, what: str, list_call: Callable[..., Any]) -> Iterator[list[dict[str, Any]]]:
        # An expired continue token (410) fails this read; the pass is tried again at the next interval.
        token: str | None = None
        while True:
            page = self._retry.call(f"LIST {what}", partial(self._page, list_call, token))
            yield page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return

    def _page(self, list_call: Callable[..., Any], token: str | None) -> dict[str, Any]:
        return _json(list_call(limit=self.PAGE, _continue=token, _preload_content=False))

    def _parsed(
        self,
        kind: str,
        what: str,
        list_call: Callable[..., Any],
        also: Callable[[list[dict[str, Any]]], None] = lambda items: None,
    ) -> Snapshot:
        """Every page parsed as `kind`; `also` sees each page's raw objects before they are dropped."""
        nodes: list[Node] = []
        pods: list[Pod] = []
        pdbs: list[PodDisruptionBudget] = []
        for items in self._pages(what, list_call):
            part = snapshot_from_document({"kind": f"{kind}List", "items": items})
            nodes += part.nodes
            pods += part.pods
            pdbs += part.pdbs
            also(items)
        return Snapshot(nodes=tuple(nodes), pods=tuple(pods), pdbs=tuple(pdbs))

    def read(self) -> ClusterState:
        waiting: set[str] = set()
        nodes = self._parsed("Node", "nodes", self._core.list_node)
        pods = self._parsed(
            "Pod",
            "pods",
            self._core.list_pod_for_all_namespaces,
            lambda items: waiting.update(unschedulable(items)),
        )
        unreadable: dict[str, str] = {}
        try:
            pdbs = self._parsed(
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                self._policy.list_pod_disruption_budget_for_all_namespaces,
            )
        except (ApiException, KubeApiUnavailable) as exc:
            unreadable["PodDisruptionBudgets"] = failure_reason(exc)
            pdbs = Snapshot(nodes=(), pods=())
        policies: list[PoolPolicy] = []
        documents: dict[str, Mapping[str, Any]] = {}
        errors: dict[str, str] = {}
        for doc in self._items(POOL_PLURAL, self._list_pools):
            name = str(doc.get("metadata", {}).get("name", ""))
            try:
                policies.append(self._read_pool({**doc, "kind": "GPUNodePool"}))
                documents[name] = doc
            except InvalidPool as exc:
                errors[name] = str(exc)
        # Never "could not read" as "none": what GPUWorkloads protect is unknown until they are read.
        workloads: list[dict[str, Any]] = []
        try:
            workloads = [
                {"metadata": _name_of(doc), "spec": doc.get("spec") or {}}
                for doc in self._items(WORKLOAD_PLURAL, self._list_workloads)
            ]
        except (ApiException, KubeApiUnavailable) as exc:
            unreadable["GPUWorkloads"] = failure_reason(exc)
        owners: dict[tuple[str, str, str], tuple[str, str]] = {}
        try:
            for rs in self._items("replicasets", self._list_replica_sets):
                _add_owner(owners, "ReplicaSet", rs)
        except (ApiException, KubeApiUnavailable) as exc:
            unreadable["ReplicaSets"] = failure_reason(exc)
        selectors, unresolved = self._selectors(workloads)
        return ClusterState(
            workloads=tuple(workloads),
            owners=owners,
            selectors=selectors,
            unresolved=unresolved,
            unreadable=unreadable,
            snapshot=Snapshot(nodes=nodes.nodes, pods=pods.pods, pdbs=pdbs.pdbs),
            pools=tuple(policies),
            pool_documents=documents,
            pool_errors=errors,
            unschedulable=frozenset(waiting),
        )

    def _selectors(self, workloads: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
        """/scale selectors of targets whose pods the owner chain may not reach (every kind but apps/v1
        ones, whose pods are found through ownerReferences), and why a target could not be read."""
        selectors: dict[str, str] = {}
        unresolved: dict[str, str] = {}
        for gw in workloads:
            meta, ref = gw["metadata"], (gw["spec"].get("targetRef") or {})
            target = TargetRef(
                str(ref.get("apiVersion", "")), str(ref.get("kind", "")), str(ref.get("name", ""))
            )
            if (target.group, target.kind) in SCALE_IN_OBJECT:
                continue
            key = f"{meta['namespace']}/{meta['name']}"
            try:
                selectors[key] = self._targets.read_scale(str(meta["namespace"]), target).selector
            except (TargetNotFound, TargetNotScalable):
                continue  # no target or no /scale: its pods are found through their owners
            except (ApiException, RightsizerError) as exc:
                unresolved[key] = failure_reason(exc)
        return selectors, unresolved

    def workload_documents(self) -> list[dict[str, Any]]:
        """Every GPUWorkload as stored, status included (what ``rightsizer report`` sums up)."""
        return list(self._items(WORKLOAD_PLURAL, self._list_workloads))

    def _items(self, what: str, list_call: Callable[..., Any]) -> Iterator[dict[str, Any]]:
        for items in self._pages(what, list_call):
            yield from items

    def _list_pools(self, **kwargs: Any) -> Any:
        return self._custom.list_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, **kwargs)

    def _list_replica_sets(self, **kwargs: Any) -> Any:
        return self._apps.list_replica_set_for_all_namespaces(**kwargs)

    def _list_workloads(self, **kwargs: Any) -> Any:
        return self._custom.list_cluster_custom_object(GROUP, VERSION, WORKLOAD_PLURAL, **kwargs)


def failure_reason(exc: Exception) -> str:
    """A failed API call in a few words, for conditions and events."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    return str(exc)


def _add_owner(
    owners: dict[tuple[str, str, str], tuple[str, str]], kind: str, doc: Mapping[str, Any]
) -> None:
    meta = doc.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            owners[(str(meta.get("namespace")), kind, str(meta.get("name")))] = (
                str(ref.get("kind")),
                str(ref.get("name")),
            )


def _name_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    return {"namespace": meta.get("namespace"), "name": meta.get("name")}
