"""The provider of a GPUNodePool, from its validated spec.provider."""

from __future__ import annotations

from kubernetes import client

from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.adapters.nodepools.clusterapi import ClusterApiProvider
from rightsizer.adapters.nodepools.karpenter import KarpenterProvider
from rightsizer.adapters.nodepools.kwok import KwokProvider
from rightsizer.adapters.nodepools.none import NoneProvider
from rightsizer.api.v1alpha1 import GPUNodePool, ProviderType


def provider_for(api: client.ApiClient, pool: GPUNodePool) -> NodePoolProvider:
    """Build the provider a GPUNodePool names. The model (and the CRD's CEL rules before it) has
    checked that each type carries what it needs; the errors below guard a model built in code."""
    name, spec = pool.metadata.name, pool.spec
    provider = spec.provider
    if provider.type in (ProviderType.KWOK, ProviderType.STATIC):
        template = provider.node_template.to_wire() if provider.node_template is not None else None
        return KwokProvider(
            api,
            pool=name,
            node_selector=dict(spec.node_selector or {}),
            gpu_model=spec.gpu_model,
            gpus_per_node=spec.gpus_per_node,
            template=template,
            static=provider.type is ProviderType.STATIC,
        )
    if provider.type is ProviderType.CLUSTERAPI:
        ref = provider.machine_deployment
        if ref is None:
            raise ProviderError(
                f"GPUNodePool {name}: spec.provider.machineDeployment needs namespace and name"
            )
        return ClusterApiProvider(api, pool=name, namespace=ref.namespace, machine_deployment=ref.name)
    if provider.type is ProviderType.KARPENTER:
        if not provider.node_pool:
            raise ProviderError(f"GPUNodePool {name}: spec.provider.nodePool names the Karpenter NodePool")
        return KarpenterProvider(
            api, pool=name, node_pool=provider.node_pool, gpus_per_node=spec.gpus_per_node
        )
    return NoneProvider(api, pool=name)
