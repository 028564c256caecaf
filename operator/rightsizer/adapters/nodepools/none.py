"""No provider: cordon and drain only.

For managed node groups whose own autoscaler removes empty nodes: the drained node is cordoned
(``spec.unschedulable``) so nothing lands on it again, and the platform takes it from there.
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.kube_retry import KubeRetry
from rightsizer.adapters.nodepools.base import ProviderError, ScaleUpUnsupported


class NoneProvider:
    def __init__(self, api: client.ApiClient, *, pool: str, retry: KubeRetry | None = None) -> None:
        self._core = client.CoreV1Api(api)
        self.pool = pool
        self._retry = retry or KubeRetry()

    @property
    def type(self) -> str:
        return "none"

    @property
    def can_scale_up(self) -> bool:
        return False

    @property
    def removes_nodes(self) -> bool:
        return False

    def desired_nodes(self) -> None:
        return None

    def add_nodes(self, count: int) -> list[str]:
        raise ScaleUpUnsupported(self.pool, "none", "the platform's autoscaler adds nodes")

    def remove_node(self, node: str) -> None:
        try:
            # Absolute: cordoning twice is cordoning once, so it is retried like a read.
            self._retry.call(
                f"PATCH node {node} unschedulable",
                lambda: self._core.patch_node(node, {"spec": {"unschedulable": True}}),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise ProviderError(
                    f"GPUNodePool {self.pool}: cordoning node {node} failed: {exc.reason}"
                ) from exc

    def check(self) -> str | None:
        return None  # Node objects are all it needs: the API server is always there

    def describe(self) -> str:
        return "none: cordon and drain only; the platform removes empty nodes"
