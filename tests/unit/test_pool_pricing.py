"""Which prices a workload's cost uses when its pods run in a Karpenter pool that sets none."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rightsizer.api.v1alpha1 import GPUNodePoolSpec, GPUWorkloadSpec
from rightsizer.runtime.mapping import workload_pricing
from rightsizer.runtime.settings import PricingDefaults

pytestmark = pytest.mark.unit

POOL = GPUNodePoolSpec.model_validate(
    {
        "provider": {"type": "karpenter", "nodePool": "gpu-l4"},
        "gpuModel": "NVIDIA-L4",
        "gpusPerNode": 4,
    }
)
WORKLOAD = GPUWorkloadSpec.model_validate(
    {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
        "workloadType": "Inference",
        "maxReplicas": 2,
    }
)


def test_a_karpenter_pool_prices_a_gpu_from_its_nodes_instance_price() -> None:
    labels = {"karpenter.sh/nodepool": "gpu-l4", "eks-node-viewer/instance-price": "4.600000"}
    pricing, origin = workload_pricing(WORKLOAD, [POOL], [labels], PricingDefaults())
    assert origin == "pool NVIDIA-L4"
    assert (pricing.node_hour, pricing.gpus_per_node, pricing.gpu_hour) == (Decimal("4.6"), 4, None)


def test_without_a_labelled_price_the_gpu_models_default_applies_not_the_operators() -> None:
    labels = {"karpenter.sh/nodepool": "gpu-l4"}
    pricing, origin = workload_pricing(WORKLOAD, [POOL], [labels], PricingDefaults(gpu_hour=Decimal("9")))
    assert origin == "pool NVIDIA-L4"
    assert (pricing.gpu_hour, pricing.node_hour) == (Decimal("0.80"), None)


def test_nodes_of_another_nodepool_are_not_the_pools() -> None:
    labels = {"karpenter.sh/nodepool": "gpu-h100", "eks-node-viewer/instance-price": "98"}
    _pricing, origin = workload_pricing(WORKLOAD, [POOL], [labels], PricingDefaults())
    assert origin == "operator defaults"
