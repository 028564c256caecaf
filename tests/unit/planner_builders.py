"""Builders of Kubernetes JSON objects for planner tests: as `kubectl get -o json` would print them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rightsizer.core.pools import PoolPolicy
from rightsizer.runtime.mapping import read_pool

A100 = "NVIDIA-A100-SXM4-80GB"
L4 = "NVIDIA-L4"
CREATED = "2026-01-01T00:00:00Z"


def node(
    name: str,
    *,
    gpus: int = 0,
    model: str | None = None,
    cpu: str = "64",
    memory: str = "512Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    created: str = CREATED,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "zone-a"}
    if gpus:
        all_labels["nvidia.com/gpu.product"] = model or A100
        all_labels["rightsizer.io/pool"] = "a100" if (model or A100) == A100 else "l4"
    else:
        all_labels["rightsizer.io/pool"] = "cpu"
        all_labels["node.kubernetes.io/instance-type"] = "cpu-32"
    all_labels.update(labels or {})
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": annotations or {},
            "creationTimestamp": created,
        },
        "spec": spec,
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def gpu_node(name: str, gpus: int = 8, model: str = A100, **kwargs: Any) -> dict[str, Any]:
    return node(name, gpus=gpus, model=model, **kwargs)


def cpu_node(name: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("cpu", "32")
    kwargs.setdefault("memory", "128Gi")
    return node(name, **kwargs)


def pod(
    name: str,
    node_name: str | None,
    *,
    namespace: str = "default",
    gpus: int = 0,
    cpu: str = "1",
    memory: str = "1Gi",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: str | None = "ReplicaSet",
    node_selector: dict[str, str] | None = None,
    affinity: dict[str, Any] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    created: str = CREATED,
    spread: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
        limits["nvidia.com/gpu"] = str(gpus)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels or {"app": name.rsplit("-", 1)[0]},
        "annotations": annotations or {},
        "creationTimestamp": created,
    }
    if owner:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner", "controller": True, "uid": "u"}
        ]
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "x", "resources": {"requests": requests, "limits": limits}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = tolerations
    if volumes:
        spec["volumes"] = volumes
    if spread:
        spec["topologySpreadConstraints"] = spread
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": spec,
        "status": {"phase": phase, "startTime": created},
    }


def ready(pod: dict[str, Any], since: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """The pod (a ``pod()`` document), Ready since ``since``."""
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": since}]
    return pod


def pdb(name: str, match_labels: dict[str, str], allowed: int, namespace: str = "default") -> dict[str, Any]:
    return {
        "kind": "PodDisruptionBudget",
        "apiVersion": "policy/v1",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": match_labels}, "maxUnavailable": 1},
        "status": {"disruptionsAllowed": allowed},
    }


def kube_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def gpu_pool(
    name: str,
    *,
    selector: dict[str, str],
    price_per_gpu_hour: str | None = "3.00",
    **spec: Any,
) -> dict[str, Any]:
    # gpuModel and gpusPerNode are required by the API; those of the A100 nodes unless given.
    body: dict[str, Any] = {"nodeSelector": selector, "gpuModel": A100, "gpusPerNode": 8}
    if price_per_gpu_hour is not None:
        body["pricePerGpuHour"] = price_per_gpu_hour
    body.update(spec)
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": name},
        "spec": body,
    }


def policies(documents: Sequence[dict[str, Any]]) -> tuple[PoolPolicy, ...]:
    """Pool documents as the operator reads them: the API's model, then the core's policy. The
    planner also takes pools of CPU nodes, which no GPUNodePool describes (the pools it makes itself
    without GPUNodePools, by instance type, and the benchmarks' CPU pool); one is written here as
    ``gpusPerNode: 0`` and becomes such a pool: no GPU model, no GPUs per node."""
    read = []
    for document in documents:
        spec = dict(document["spec"])
        cpu_only = spec.get("gpusPerNode") == 0
        if cpu_only:
            spec["gpusPerNode"] = 1
        policy = read_pool({**document, "spec": spec})
        read.append(replace(policy, gpu_model=None, gpus_per_node=None) if cpu_only else policy)
    return tuple(read)
