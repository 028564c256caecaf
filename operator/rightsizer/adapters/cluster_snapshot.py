"""The planner's Snapshot from the live API server: one list of nodes, pods, PDBs and GPUNodePools per pass.

Objects are read as raw JSON (no client-side model deserialisation, which is slow on thousands of
pods) and handed to the same parser as `rightsizer plan --snapshot`, so the dry run and the operator
see the cluster identically. A GPUNodePool that cannot be read is reported, not silently dropped, and
the others are still used: one bad pool must not stop consolidation of the rest. Every list is
retried on throttling, 5xx and lost connections (:mod:`kube_retry`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.kube_retry import KubeRetry
from rightsizer.core.errors import InvalidPool
from rightsizer.core.pools import PoolPolicy, parse_pool
from rightsizer.core.snapshot import Snapshot, snapshot_from_document

GROUP, VERSION, POOL_PLURAL = "rightsizer.io", "v1alpha1", "gpunodepools"


@dataclass(frozen=True)
class ClusterState:
    """One consistent-enough read of the cluster for a consolidation pass."""

    snapshot: Snapshot
    pools: tuple[PoolPolicy, ...]
    pool_documents: Mapping[str, Mapping[str, Any]]  # GPUNodePool objects by name, as read
    pool_errors: Mapping[str, str]  # pools that could not be read, with why
    pods_raw: tuple[Mapping[str, Any], ...]  # pods as read (status conditions for scale-up)
    workloads: tuple[Mapping[str, Any], ...] = ()  # GPUWorkloads: what they say about their pods


def _json(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.data)
    return document


class ClusterReader:
    def __init__(self, api: client.ApiClient, retry: KubeRetry | None = None) -> None:
        self._core = client.CoreV1Api(api)
        self._policy = client.PolicyV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._retry = retry or KubeRetry()

    def read(self) -> ClusterState:
        call = self._retry.call
        nodes = call("LIST nodes", lambda: _json(self._core.list_node(_preload_content=False)))
        pods = call(
            "LIST pods", lambda: _json(self._core.list_pod_for_all_namespaces(_preload_content=False))
        )
        pdbs = call(
            "LIST poddisruptionbudgets",
            lambda: _json(self._policy.list_pod_disruption_budget_for_all_namespaces(_preload_content=False)),
        )
        pools = call(
            "LIST gpunodepools",
            lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, POOL_PLURAL),
        )
        items: list[dict[str, Any]] = []
        for kind, listed in (("Node", nodes), ("Pod", pods), ("PodDisruptionBudget", pdbs)):
            items.extend({**item, "kind": kind} for item in listed.get("items") or [])
        snapshot = snapshot_from_document({"kind": "List", "items": items})
        policies: list[PoolPolicy] = []
        documents: dict[str, Mapping[str, Any]] = {}
        errors: dict[str, str] = {}
        for doc in pools.get("items") or []:
            name = str(doc.get("metadata", {}).get("name", ""))
            try:
                policies.append(parse_pool({**doc, "kind": "GPUNodePool"}))
                documents[name] = doc
            except InvalidPool as exc:
                errors[name] = str(exc)
        try:
            listed = call(
                "LIST gpuworkloads",
                lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, "gpuworkloads"),
            )
            workloads = listed.get("items") or []
        except ApiException as exc:
            if exc.status != 403:  # an operator restricted to some namespaces cannot list them all
                raise
            workloads = []
        return ClusterState(
            workloads=tuple(workloads),
            snapshot=snapshot,
            pools=tuple(policies),
            pool_documents=documents,
            pool_errors=errors,
            pods_raw=tuple(pods.get("items") or []),
        )
