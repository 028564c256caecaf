"""Manifests for fake (kwok-managed) nodes that look like real GPU cloud instances.

Used by the local cluster, the demo and the kwok node-pool provider when it scales a pool up.
kwok's controller only manages nodes carrying its annotation; it then marks them Ready and
runs the pods the real scheduler places on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "rightsizer.io/pool"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"


@dataclass(frozen=True)
class NodeShape:
    """One instance type: what the node offers the scheduler."""

    instance_type: str
    cpu: int
    memory_gi: int
    gpus: int = 0
    gpu_product: str = ""
    gpu_memory_mib: int = 0
    max_pods: int = 110
    # The kubelet and system daemons reserve part of every node; allocatable is what pods get.
    reserved_cpu_m: int = 500
    reserved_memory_gi: int = 4
    extra_labels: dict[str, str] = field(default_factory=dict)


A100_80GB_X8 = NodeShape("p4de.24xlarge", 96, 1152, 8, "NVIDIA-A100-SXM4-80GB", 81920)
L4_X4 = NodeShape("g6.12xlarge", 48, 192, 4, "NVIDIA-L4", 23034)
L4_X1 = NodeShape("g6.2xlarge", 8, 32, 1, "NVIDIA-L4", 23034)
L4_X8 = NodeShape("g6.48xlarge", 192, 768, 8, "NVIDIA-L4", 23034)
H100_X8 = NodeShape("p5.48xlarge", 192, 2048, 8, "NVIDIA-H100-80GB-HBM3", 81559)
CPU_32 = NodeShape("m6i.8xlarge", 32, 128)

SHAPES: dict[str, NodeShape] = {
    s.instance_type: s for s in (A100_80GB_X8, H100_X8, L4_X4, L4_X8, L4_X1, CPU_32)
}


def gpu_labels(shape: NodeShape) -> dict[str, str]:
    """The labels GPU feature discovery puts on a node of the shape (none on a CPU node)."""
    if not shape.gpus:
        return {}
    return {
        GPU_PRODUCT_LABEL: shape.gpu_product,
        GPU_MEMORY_LABEL: str(shape.gpu_memory_mib),
        GPU_COUNT_LABEL: str(shape.gpus),
    }


def fake_node_manifest(name: str, shape: NodeShape, pool: str, zone: str) -> dict[str, Any]:
    """A Node object kwok will manage, with capacity, allocatable and the labels GPU clusters carry."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": shape.instance_type,
        "topology.kubernetes.io/zone": zone,
        "topology.kubernetes.io/region": zone[:-1],
        "type": "kwok",
        POOL_LABEL: pool,
        **shape.extra_labels,
    }
    capacity = {
        "cpu": str(shape.cpu),
        "memory": f"{shape.memory_gi}Gi",
        "pods": str(shape.max_pods),
        "ephemeral-storage": "500Gi",
    }
    allocatable = {
        "cpu": f"{shape.cpu * 1000 - shape.reserved_cpu_m}m",
        "memory": f"{shape.memory_gi - shape.reserved_memory_gi}Gi",
        "pods": str(shape.max_pods),
        "ephemeral-storage": "450Gi",
    }
    if shape.gpus:
        labels.update(gpu_labels(shape))
        capacity[GPU_RESOURCE] = str(shape.gpus)
        allocatable[GPU_RESOURCE] = str(shape.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "nodeInfo": {
                "machineID": name,
                "systemUUID": name,
                "bootID": name,
                "kernelVersion": "6.1.0",
                "osImage": "kwok fake node",
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
            },
        },
    }
