"""Karpenter provider: the pool is one Karpenter NodePool (karpenter.sh/v1).

Removing a node deletes its NodeClaim (Karpenter's termination controller then drains the node,
removes the instance and the Node, possibly later: the drain intent completes once the node is
gone). The user's NodePool, its limits included, is never changed: Karpenter launches nodes only for
Pending pods, and a drained node leaves none behind. Karpenter launches nodes itself, so this provider
does not add nodes on request. Karpenter missing, or the NodePool, is a hold with the remedy (check).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.base import ProviderError, ScaleUpUnsupported
from rightsizer.core.snapshot import KARPENTER_NODEPOOL_LABEL as NODEPOOL_LABEL

GROUP = "karpenter.sh"
VERSION = "v1"


class KarpenterProvider:
    def __init__(self, api: client.ApiClient, *, pool: str, node_pool: str, gpus_per_node: int) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.pool = pool
        self.node_pool = node_pool
        self.gpus_per_node = gpus_per_node

    @property
    def type(self) -> str:
        return "karpenter"

    @property
    def can_scale_up(self) -> bool:
        return False

    @property
    def removes_nodes(self) -> bool:
        return True

    def check(self) -> str | None:
        try:
            self._custom.get_cluster_custom_object(GROUP, VERSION, "nodepools", self.node_pool)
        except ApiException as exc:
            return self._problem(exc)
        return None

    def _problem(self, exc: ApiException) -> str:
        where = f"GPUNodePool {self.pool}"
        if exc.status == 404 and _names_object(exc, self.node_pool):
            return (
                f"{where}: Karpenter NodePool {self.node_pool} not found; create it or correct "
                "spec.provider.nodePool"
            )
        if exc.status == 404:
            return (
                f"{where}: Karpenter is not installed (the API server does not serve {GROUP}/{VERSION} "
                "NodePools); install Karpenter or set spec.provider.type to what manages these nodes"
            )
        if exc.status == 403:
            return (
                f"{where}: reading Karpenter NodePool {self.node_pool} was refused (403); install the chart "
                "with providers.karpenter: true"
            )
        return f"{where}: Karpenter NodePool {self.node_pool} cannot be read ({exc.status} {exc.reason})"

    def _claims(self) -> list[dict[str, Any]]:
        listed = self._custom.list_cluster_custom_object(
            GROUP, VERSION, "nodeclaims", label_selector=f"{NODEPOOL_LABEL}={self.node_pool}"
        )
        return list(listed.get("items") or [])

    def desired_nodes(self) -> int:
        return sum(1 for c in self._claims() if not c.get("metadata", {}).get("deletionTimestamp"))

    def add_nodes(self, count: int) -> list[str]:
        raise ScaleUpUnsupported(self.pool, "karpenter", "Karpenter launches nodes for Pending pods itself")

    def remove_node(self, node: str) -> None:
        claim = next((c for c in self._claims() if (c.get("status") or {}).get("nodeName") == node), None)
        if claim is None or claim.get("metadata", {}).get("deletionTimestamp"):
            return  # gone or already being deleted (a resumed removal)
        name = claim["metadata"]["name"]
        try:
            self._custom.delete_cluster_custom_object(GROUP, VERSION, "nodeclaims", name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise ProviderError(
                f"GPUNodePool {self.pool}: deleting NodeClaim {name} failed ({exc.status} {exc.reason}); "
                "the operator needs delete on nodeclaims.karpenter.sh"
            ) from exc
        # The user's NodePool limits are theirs: Karpenter's termination flow drains and deletes the
        # node, and it provisions again only for Pending pods, so no limit needs lowering.

    def describe(self) -> str:
        return f"karpenter: NodePool {self.node_pool}"


def _names_object(exc: ApiException, name: str) -> bool:
    """A 404 about the object (a Status naming it), not about the resource type (the API server
    answers a type it does not serve with a plain "404 page not found")."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return False
    return isinstance(body, dict) and (body.get("details") or {}).get("name") == name
