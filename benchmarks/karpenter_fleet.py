"""The fleets of the side-by-side benchmark (benchmarks/karpenter.py): GPU work placed by the real
scheduler on nodes the real Karpenter launched, in an order that fragments them.

Build order, the same for every run: large "filler" pods make Karpenter launch one node each (two
filler pods never fit one node); then inference Deployments with PDBs, training workers, CPU services
and a few do-not-disrupt pods arrive and the scheduler (LeastAllocated) spreads them over those
nodes; then the filler work finishes. What is left is the fragmented fleet both contenders start
from. The second fleet also has GPU pods that hold GPUs but are idle (finished or over-provisioned
work): only a GPU-activity-aware operator can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from rightsizer.devcluster.karpenter_fleet import SHAPES, PricedShape, node_pool

NAMESPACE = "bench-karpenter"
POOL_LABEL = "karpenter.sh/nodepool"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
ROLE = "bench.rightsizer.io/role"


@dataclass(frozen=True)
class GpuPool:
    """One Karpenter NodePool of the benchmark and what lands on it."""

    name: str
    shape: PricedShape
    nodes: int  # filler pods, so nodes Karpenter launches
    filler_gpus: int  # per filler pod: two never share a node
    inference: int  # Deployments of 3 × 1-GPU pods with a PDB (maxUnavailable 1)
    training: int  # training runs of 2 × 1-GPU workers
    idle: int  # Deployments of 2 × 1-GPU pods that hold GPUs and do nothing (second fleet only)


@dataclass(frozen=True)
class Fleet:
    name: str
    pools: tuple[GpuPool, ...]
    cpu_services: int  # 2-CPU pods spread over the GPU nodes
    guarded: int  # 1-GPU pods annotated karpenter.sh/do-not-disrupt, per pool

    @property
    def gpu_nodes(self) -> int:
        return sum(p.nodes for p in self.pools)


def _shape(pool: str) -> PricedShape:
    return next(s for s in SHAPES if s.pool == pool)


def fleets(scale: float) -> tuple[Fleet, Fleet]:
    """Two fleets of about 64 × scale GPU nodes: without and with idle GPU pods."""

    def n(count: int) -> int:
        return max(1, round(count * scale))

    def pools(idle: bool) -> tuple[GpuPool, ...]:
        return (
            GpuPool("bench-a100", _shape("gpu-a100-x8"), n(36), 5, n(6), n(3), n(6) if idle else 0),
            GpuPool("bench-l4", _shape("gpu-l4-x4"), n(28), 3, n(5), n(2), n(4) if idle else 0),
        )

    return (
        Fleet("steady", pools(idle=False), cpu_services=n(16), guarded=n(2)),
        Fleet("idle-gpus", pools(idle=True), cpu_services=n(16), guarded=n(2)),
    )


def node_pools(fleet: Fleet, *, karpenter_consolidates: bool) -> list[dict[str, Any]]:
    """(a) Karpenter alone: WhenEmptyOrUnderutilized, consolidateAfter 0s, budgets 100%.
    (b) Karpenter beside GPU Rightsizer: WhenEmpty (it provisions and removes empty nodes)."""
    policy = "WhenEmptyOrUnderutilized" if karpenter_consolidates else "WhenEmpty"
    return [
        node_pool(
            p.shape,
            name=p.name,
            consolidation_policy=policy,
            consolidate_after="0s",
            budget="100%",
            gpu_limit=1000,
        )
        for p in fleet.pools
    ]


def _pod_spec(pool: str, gpus: int, cpu: str = "1") -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": "2Gi"}
    limits: dict[str, str] = {}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    return {
        "nodeSelector": {POOL_LABEL: pool},
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": requests, "limits": limits} if limits else {"requests": requests},
            }
        ],
    }


def _controller(
    kind: str,
    name: str,
    labels: dict[str, str],
    replicas: int,
    pod_spec: dict[str, Any],
    *,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Deployment or StatefulSet of `replicas` pods selected by `app: name`."""
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            **spec,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels, "annotations": annotations or {}}, "spec": pod_spec},
        },
    }


def deployment(
    name: str, pool: str, replicas: int, gpus: int, role: str, *, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    pod_spec = _pod_spec(pool, gpus, cpu="2" if role == "cpu" else "1")
    labels = {"app": name, ROLE: role}
    return _controller("Deployment", name, labels, replicas, pod_spec, annotations=annotations)


def training(name: str, pool: str, pods: int) -> dict[str, Any]:
    """A training run's workers: a StatefulSet, since kwok completes any pod a batch Job owns at once
    (the workers of a PyTorchJob or a JobSet replica are not Job pods to Karpenter either)."""
    labels = {"app": name, ROLE: "training", "rightsizer.io/workload-type": "training"}
    return _controller(
        "StatefulSet",
        name,
        labels,
        pods,
        _pod_spec(pool, 1),
        serviceName=name,
        podManagementPolicy="Parallel",
    )


def pdb(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
    }


def fillers(fleet: Fleet) -> list[dict[str, Any]]:
    return [deployment(f"fill-{p.name}", p.name, p.nodes, p.filler_gpus, "filler") for p in fleet.pools]


def workloads(fleet: Fleet) -> list[dict[str, Any]]:
    """What stays once the filler work has finished, in the order it arrives."""
    objects: list[dict[str, Any]] = []
    for p in fleet.pools:
        for i in range(p.inference):
            objects += [
                deployment(f"infer-{p.name}-{i}", p.name, 3, 1, "inference"),
                pdb(f"infer-{p.name}-{i}"),
            ]
        objects += [training(f"train-{p.name}-{i}", p.name, 2) for i in range(p.training)]
        objects += [deployment(f"idle-{p.name}-{i}", p.name, 2, 1, "idle") for i in range(p.idle)]
        guarded = {DO_NOT_DISRUPT: "true"}
        objects += [
            deployment(f"guarded-{p.name}-{i}", p.name, 1, 1, "guarded", annotations=guarded)
            for i in range(fleet.guarded)
        ]
    cpu_pools = [p.name for p in fleet.pools]
    objects += [
        deployment(f"svc-{i}", cpu_pools[i % len(cpu_pools)], 1, 0, "cpu") for i in range(fleet.cpu_services)
    ]
    return objects


def utilisation_rules() -> dict[str, Any]:
    """The fake DCGM exporter's scenario: inference half busy, training busy, idle pods at 0%."""
    utilisation = {"idle": 0, "training": 85, "guarded": 60, "filler": 70, "inference": 45}
    rules = [{"selector": {ROLE: role}, "util": util} for role, util in utilisation.items()]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "fake-dcgm-scenario",
            "namespace": NAMESPACE,
            "labels": {"rightsizer.io/fake-dcgm-scenario": "true"},
        },
        "data": {"scenario.yaml": yaml.safe_dump({"rules": rules})},
    }


def _gpu_workload(name: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
            "mode": "Enforce",
            **spec,
        },
    }


def gpu_workloads(fleet: Fleet, *, training_movable: bool = False) -> list[dict[str, Any]]:
    """(b) only: GPUWorkloads in Enforce on every inference, training and idle workload.

    Inference is right-sized on its GPU activity (45% against a 60% target: it keeps its 3 replicas).
    A training run keeps its workers; whether consolidation may move them is the user's call
    (``training_movable``: they checkpoint; by default a moved worker loses its progress, so they are
    never moved). The idle pods are finished work: training runs whose pods still hold their GPUs at
    0%, suspended after two idle minutes."""
    objects = []
    for p in fleet.pools:
        for i in range(p.inference):
            objects.append(
                _gpu_workload(
                    f"infer-{p.name}-{i}",
                    "Deployment",
                    {
                        "workloadType": "Inference",
                        "minReplicas": 1,
                        "maxReplicas": 6,
                        "targetUtilization": 60,
                    },
                )
            )
        for i in range(p.training):
            protection = {"allowConsolidation": True} if training_movable else {}
            objects.append(
                _gpu_workload(
                    f"train-{p.name}-{i}",
                    "StatefulSet",
                    {"workloadType": "Training", "minReplicas": 2, "protection": protection},
                )
            )
        for i in range(p.idle):
            objects.append(
                _gpu_workload(
                    f"idle-{p.name}-{i}",
                    "Deployment",
                    {
                        "workloadType": "Training",
                        "minReplicas": 2,
                        "idlePolicy": {"action": "Suspend", "idleFor": "2m"},
                    },
                )
            )
    return objects


def gpu_node_pools(fleet: Fleet) -> list[dict[str, Any]]:
    """(b) only: a GPUNodePool over each Karpenter NodePool: its nodes are the NodePool's, priced from
    their instance type (the price Karpenter's kwok provider labels them with)."""
    return [
        {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "GPUNodePool",
            "metadata": {"name": p.name},
            "spec": {
                "provider": {"type": "karpenter", "nodePool": p.name},
                "gpuModel": p.shape.shape.gpu_product,
                "gpusPerNode": p.shape.shape.gpus,
                "consolidationPolicy": "WhenUnderutilized",
                "consolidateAfter": "0s",
                "scaleDownAfter": "0s",
                "startupGracePeriod": "0s",
                "disruption": {"budgets": [{"nodes": "100%"}]},
            },
        }
        for p in fleet.pools
    ]
