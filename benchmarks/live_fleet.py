"""The fleet the live benchmark creates, as plain manifests (no I/O): nodes, namespaces, Deployments,
GPUWorkloads, scenario ConfigMaps, GPUNodePools and the audit policy that attributes API requests.

At scale 1: 500 fake GPU nodes in two pools (300 x a2-megagpu-16g with 16 A100 40GB, 200 x
g2-standard-96 with 8 L4: 6,400 GPUs), 1,000 Deployments x 5 replicas of one-GPU pods (5,000 pods,
78% of the GPUs requested), a GPUWorkload per Deployment in 50 namespaces. Nine in ten are Inference
in Enforce mode running at 56-64% of a 60% target (inside the 10% tolerance: a steady fleet, every
pass decides "no change"), one in ten Training in Recommend mode running at 90%. One Inference
workload, the probe, takes its utilisation from a scenario rule the benchmark changes to measure the
time from a utilisation change to the scaling action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from rightsizer.adapters.nodepools.kwok_nodes import NodeShape, fake_node_manifest

# The operator runs as this ServiceAccount (the chart installed under this release name and namespace),
# so the audit policy can name its user before the cluster starts.
CHART_NAMESPACE = "rightsizer-bench"
CHART_RELEASE = "gpu-rightsizer"
OPERATOR_USER = f"system:serviceaccount:{CHART_NAMESPACE}:{CHART_RELEASE}"

BENCH_LABEL = "rightsizer.io/bench"
POOL_LABEL = "rightsizer.io/pool"
SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"
UTIL_ANNOTATION = "rightsizer.io/fake-gpu-util"
REGION = "us-central1"
ZONES = tuple(f"{REGION}-{z}" for z in "abc")

A100_40GB_X16 = NodeShape("a2-megagpu-16g", 96, 1360, 16, "NVIDIA-A100-SXM4-40GB", 40960)
L4_X8 = NodeShape("g2-standard-96", 96, 384, 8, "NVIDIA-L4", 23034)


@dataclass(frozen=True)
class Pool:
    name: str
    shape: NodeShape
    node_share: float  # of the nodes
    workload_share: float  # of the workloads
    price_per_gpu_hour: str
    watts: int
    idle_watts: int


POOLS = (
    Pool("bench-a100", A100_40GB_X16, 0.6, 0.75, "2.93", 400, 60),
    Pool("bench-l4", L4_X8, 0.4, 0.25, "0.71", 72, 16),
)


@dataclass(frozen=True)
class Shape:
    """How big the fleet is; `scaled` keeps the proportions of the full-size run."""

    nodes: int = 500
    workloads: int = 1000
    replicas: int = 5
    workloads_per_namespace: int = 20
    training_every: int = 10  # every 10th workload is Training (Recommend)

    @classmethod
    def scaled(cls, factor: float) -> Shape:
        if not 0 < factor <= 1:
            raise ValueError(f"--scale must be in (0, 1], got {factor}")
        full = cls()
        return cls(nodes=max(2, round(full.nodes * factor)), workloads=max(2, round(full.workloads * factor)))

    @property
    def pods(self) -> int:
        return self.workloads * self.replicas

    @property
    def namespaces(self) -> int:
        return math.ceil(self.workloads / self.workloads_per_namespace)


@dataclass(frozen=True)
class Workload:
    index: int
    namespace: str
    name: str
    pool: Pool
    training: bool
    util: int | None  # None: driven by a scenario rule (the probe)

    @property
    def enforce(self) -> bool:
        return not self.training


PROBE_INDEX = 0
PROBE_START_UTIL = 60
PROBE_CHANGED_UTIL = 100


def namespace_name(i: int) -> str:
    return f"bench-{i:03d}"


def node_names(shape: Shape) -> list[tuple[str, Pool]]:
    out: list[tuple[str, Pool]] = []
    remaining = shape.nodes
    for n, pool in enumerate(POOLS):
        count = remaining if n == len(POOLS) - 1 else round(shape.nodes * pool.node_share)
        remaining -= count
        out += [(f"{pool.name}-{i:04d}", pool) for i in range(count)]
    return out


def node_manifests(shape: Shape) -> list[dict[str, Any]]:
    nodes = []
    for i, (name, pool) in enumerate(node_names(shape)):
        node = fake_node_manifest(name, pool.shape, pool.name, ZONES[i % len(ZONES)])
        node["metadata"]["labels"] |= {BENCH_LABEL: "true", "topology.kubernetes.io/region": REGION}
        nodes.append(node)
    return nodes


def _pool_of(index: int) -> Pool:
    # Spread the pools evenly through the index range, in proportion to their workload share.
    position = (index * 0.6180339887) % 1.0
    edge = 0.0
    for pool in POOLS:
        edge += pool.workload_share
        if position < edge:
            return pool
    return POOLS[-1]


def workloads(shape: Shape) -> list[Workload]:
    out = []
    for i in range(shape.workloads):
        training = i % shape.training_every == shape.training_every - 1
        if i == PROBE_INDEX:
            util: int | None = None
            pool = POOLS[0]
        else:
            util = 90 if training else 56 + (i % 9)
            pool = _pool_of(i)
        ns = namespace_name(i // shape.workloads_per_namespace)
        out.append(Workload(i, ns, f"svc-{i:04d}", pool, training, util))
    return out


def capacity_check(shape: Shape) -> dict[str, tuple[int, int]]:
    """GPUs requested and offered per pool: everything must schedule, with room for the probe."""
    offered: dict[str, int] = {}
    for _, pool in node_names(shape):
        offered[pool.name] = offered.get(pool.name, 0) + pool.shape.gpus
    requested: dict[str, int] = {}
    for w in workloads(shape):
        requested[w.pool.name] = requested.get(w.pool.name, 0) + shape.replicas
    return {p.name: (requested.get(p.name, 0), offered.get(p.name, 0)) for p in POOLS}


def namespace_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
    }


def deployment(w: Workload, replicas: int) -> dict[str, Any]:
    labels = {"app": w.name, BENCH_LABEL: "true"}
    annotations = {UTIL_ANNOTATION: str(w.util)} if w.util is not None else {}
    gpu = {"nvidia.com/gpu": "1"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": w.name}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "nodeSelector": {POOL_LABEL: w.pool.name},
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {
                                "requests": {"cpu": "2", "memory": "8Gi", **gpu},
                                "limits": dict(gpu),
                            },
                        }
                    ],
                },
            },
        },
    }


def gpu_workload(w: Workload, replicas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
        "workloadType": "Training" if w.training else "Inference",
        "mode": "Enforce" if w.enforce else "Recommend",
        # One minute of samples: with a 15 s scrape that is four points per GPU, so a change of
        # utilisation shows after one or two scrapes.
        "metric": {"window": "1m"},
    }
    if not w.training:
        spec |= {"targetUtilization": 60, "minReplicas": 1, "maxReplicas": replicas * 2}
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": {BENCH_LABEL: "true"}},
        "spec": spec,
    }


def scenario_configmap(probe: Workload, util: int) -> dict[str, Any]:
    """The probe's scenario rule. Every other pod carries its utilisation on its own annotation, so
    changing the probe's is one ConfigMap update."""
    rules = [{"selector": {"app": probe.name}, "util": util, "memoryUsedMiB": 20000}]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "fake-dcgm-scenario",
            "namespace": probe.namespace,
            "labels": {SCENARIO_LABEL: "true", BENCH_LABEL: "true"},
        },
        "data": {"scenario.yaml": yaml.safe_dump({"rules": rules})},
    }


def node_pool(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": pool.name, "labels": {BENCH_LABEL: "true"}},
        "spec": {
            "nodeSelector": {POOL_LABEL: pool.name},
            "provider": {"type": "kwok"},
            "gpuModel": pool.shape.gpu_product,
            "gpusPerNode": pool.shape.gpus,
            "pricePerGpuHour": float(pool.price_per_gpu_hour),
            "cpuCorePricePerHour": 0.03,
            "wattsPerGpu": pool.watts,
            "idleWattsPerGpu": pool.idle_watts,
            "pue": 1.3,
            "energyPricePerKwh": 0.12,
            "minNodes": 0,
            "consolidationPolicy": "WhenEmpty",
        },
    }


def audit_policy(user: str = OPERATOR_USER) -> dict[str, Any]:
    """Log every request of the operator's user (one line per stage at Metadata level), nothing else."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": [user]}, {"level": "None"}],
    }


def fleet(shape: Shape) -> dict[str, list[dict[str, Any]]]:
    """Everything to create, in the order it must exist."""
    ws = workloads(shape)
    probe = ws[PROBE_INDEX]
    namespaces = sorted({w.namespace for w in ws})
    return {
        "nodes": node_manifests(shape),
        "namespaces": [namespace_manifest(ns) for ns in namespaces],
        "scenarios": [scenario_configmap(probe, PROBE_START_UTIL)],
        "pools": [node_pool(p) for p in POOLS],
        "deployments": [deployment(w, shape.replicas) for w in ws],
        "workloads": [gpu_workload(w, shape.replicas) for w in ws],
    }
