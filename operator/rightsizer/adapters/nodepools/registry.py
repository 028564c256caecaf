"""The provider of a GPUNodePool, from its spec.provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.adapters.nodepools.clusterapi import ClusterApiProvider
from rightsizer.adapters.nodepools.karpenter import KarpenterProvider
from rightsizer.adapters.nodepools.kwok import KwokProvider
from rightsizer.adapters.nodepools.none import NoneProvider


def provider_for(api: client.ApiClient, pool: Mapping[str, Any]) -> NodePoolProvider:
    """Build the provider a GPUNodePool object names (the CRD has validated the fields it needs)."""
    name = str(pool["metadata"]["name"])
    spec = pool.get("spec") or {}
    provider = spec.get("provider") or {}
    kind = provider.get("type", "none")
    gpus = int(spec.get("gpusPerNode") or 0)
    if kind in ("kwok", "static"):
        return KwokProvider(
            api,
            pool=name,
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            gpu_model=spec.get("gpuModel"),
            gpus_per_node=gpus,
            template=provider.get("nodeTemplate"),
            static=kind == "static",
        )
    if kind == "clusterapi":
        ref = provider.get("machineDeployment") or {}
        if not ref.get("namespace") or not ref.get("name"):
            raise ProviderError(
                f"GPUNodePool {name}: spec.provider.machineDeployment needs namespace and name"
            )
        return ClusterApiProvider(api, pool=name, namespace=ref["namespace"], machine_deployment=ref["name"])
    if kind == "karpenter":
        if not provider.get("nodePool"):
            raise ProviderError(f"GPUNodePool {name}: spec.provider.nodePool names the Karpenter NodePool")
        return KarpenterProvider(api, pool=name, node_pool=provider["nodePool"], gpus_per_node=gpus)
    if kind == "none":
        return NoneProvider(api, pool=name)
    raise ProviderError(
        f"GPUNodePool {name}: unknown provider type {kind!r} (kwok, static, clusterapi, karpenter, none)"
    )
