"""kwok / static provider: the operator owns the Node objects themselves.

kwok: fake nodes for tests and the demo (kwok's controller marks them Ready and runs their pods).
static: nodes registered by something that only needs the Node object (the same code without the
kwok annotation). Scale-up creates nodes from the pool's nodeTemplate, or from the known instance shape
with the pool's GPU model and count; the pool's nodeSelector labels are always applied so the new
node joins the pool. Removal deletes the Node object. Lists and deletes are retried on throttling,
5xx and lost connections; a create only when it surely did not happen (names are random, a blind
retry could add a second node).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.kube_retry import KubeRetry
from rightsizer.adapters.nodepools.base import ProviderError
from rightsizer.adapters.nodepools.kwok_nodes import (
    GPU_COUNT_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    KWOK_NODE_ANNOTATION,
    POOL_LABEL,
    SHAPES,
    NodeShape,
    fake_node_manifest,
)

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
DEFAULT_ZONE = "us-east-1a"  # the local fleet's first zone; a nodeTemplate label overrides it


def shape_for(gpu_model: str | None, gpus_per_node: int, instance_type: str | None) -> NodeShape:
    """The known instance shape for this GPU model and count, else a plain one with those GPUs."""
    for shape in SHAPES.values():
        if instance_type is not None and shape.instance_type == instance_type:
            return shape
    for shape in SHAPES.values():
        if shape.gpu_product == (gpu_model or "") and shape.gpus == gpus_per_node:
            return shape
    return NodeShape(
        instance_type or f"gpu-{gpus_per_node}x",
        cpu=8 * max(gpus_per_node, 1),
        memory_gi=64 * max(gpus_per_node, 1),
        gpus=gpus_per_node,
        gpu_product=gpu_model or "",
    )


class KwokProvider:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        pool: str,
        node_selector: Mapping[str, str],
        gpu_model: str | None,
        gpus_per_node: int,
        template: Mapping[str, Any] | None = None,
        static: bool = False,
        retry: KubeRetry | None = None,
    ) -> None:
        if not node_selector:
            raise ProviderError(
                f"GPUNodePool {pool}: the kwok/static provider needs a nodeSelector to find its nodes"
            )
        self._core = client.CoreV1Api(api)
        self.pool = pool
        self.node_selector = dict(node_selector)
        self.gpu_model = gpu_model
        self.gpus_per_node = gpus_per_node
        self.template = dict(template or {})
        self._static = static
        self._retry = retry or KubeRetry()

    @property
    def type(self) -> str:
        return "static" if self._static else "kwok"

    @property
    def can_scale_up(self) -> bool:
        return True

    @property
    def removes_nodes(self) -> bool:
        return True

    def _selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.node_selector.items()))

    def desired_nodes(self) -> int:
        listed = self._retry.call(
            f"LIST nodes of pool {self.pool}",
            lambda: self._core.list_node(label_selector=self._selector()),
        )
        return len(listed.items)

    def manifest(self, name: str) -> dict[str, Any]:
        labels: dict[str, str] = dict(self.template.get("labels") or {})
        shape = shape_for(self.gpu_model, self.gpus_per_node, labels.get(INSTANCE_TYPE_LABEL))
        node = fake_node_manifest(
            name,
            shape,
            self.node_selector.get(POOL_LABEL, self.pool),
            labels.get(ZONE_LABEL, DEFAULT_ZONE),
        )
        meta, status = node["metadata"], node["status"]
        meta["labels"].update(labels)
        meta["labels"].update(self.node_selector)
        if self.gpu_model:
            meta["labels"][GPU_PRODUCT_LABEL] = self.gpu_model
        if self.gpus_per_node:
            meta["labels"][GPU_COUNT_LABEL] = str(self.gpus_per_node)
            for key in ("capacity", "allocatable"):
                status[key][GPU_RESOURCE] = str(self.gpus_per_node)
        for resource, value in (self.template.get("capacity") or {}).items():
            status["capacity"][resource] = str(value)
            status["allocatable"][resource] = str(value)
        taints = [{k: v for k, v in t.items() if v is not None} for t in self.template.get("taints") or []]
        if taints:
            node["spec"]["taints"] = taints
        if self._static:
            meta["annotations"].pop(KWOK_NODE_ANNOTATION, None)
        meta["annotations"]["rightsizer.io/created-by-pool"] = self.pool
        return node

    def add_nodes(self, count: int) -> list[str]:
        names = []
        for _ in range(count):
            name = f"{self.pool}-{secrets.token_hex(3)}"
            self._create(name, self.manifest(name))
            names.append(name)
        return names

    def _create(self, name: str, manifest: Mapping[str, Any]) -> None:
        self._retry.call(f"POST node {name}", lambda: self._core.create_node(manifest), idempotent=False)

    def remove_node(self, node: str) -> None:
        try:
            self._retry.call(f"DELETE node {node}", lambda: self._core.delete_node(node))
        except ApiException as exc:
            if exc.status != 404:
                raise ProviderError(
                    f"GPUNodePool {self.pool}: deleting node {node} failed: {exc.reason}"
                ) from exc

    def check(self) -> str | None:
        return None  # Node objects are all it needs: the API server is always there

    def describe(self) -> str:
        return f"{self.type}: Node objects labelled {self._selector()}"
