"""From API objects (plain JSON dicts, as the API server lists them) to the fake fleet's device model.

What the NVIDIA device plugin and GPU feature discovery write on a node, and what pods ask of it:
``nvidia.com/gpu`` (whole GPUs, or replicas of time-sliced ones when the node is labelled
``nvidia.com/gpu.replicas``), ``nvidia.com/gpu.shared`` (replicas under ``renameByDefault``) and
``nvidia.com/mig-<profile>`` (MIG instances, mixed strategy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rightsizer.core.errors import InvalidQuantity
from rightsizer.core.quantity import parse_quantity
from rightsizer.core.timestamps import parse_time
from rightsizer.devcluster.gpu_devices import GpuNode, GpuPod

GPU_RESOURCE = "nvidia.com/gpu"
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
DRIVER_LABEL = "nvidia.com/cuda.driver-version.full"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
UTIL_ANNOTATION = "rightsizer.io/fake-gpu-util"
# The exporter cannot map this pod's GPUs to it (as when the kubelet's pod-resources socket fails):
# its GPUs' series carry no pod labels, so the pod has no series of its own.
UNMAPPED_ANNOTATION = "rightsizer.io/fake-dcgm-unmapped"


def nodes_from_api(items: Iterable[Mapping[str, Any]]) -> list[GpuNode]:
    """Nodes with whole, shared or MIG GPU capacity; the others have nothing to export."""
    nodes: list[GpuNode] = []
    for item in items:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        capacity = (item.get("status") or {}).get("capacity") or {}
        advertised = _count(capacity.get(GPU_RESOURCE)) + _count(capacity.get(SHARED_GPU_RESOURCE))
        mig = tuple(
            sorted(
                (profile, count)
                for name, value in capacity.items()
                if (profile := mig_profile(name)) and (count := _count(value)) > 0
            )
        )
        if advertised <= 0 and not mig:
            continue
        replicas = max(1, _count(labels.get(REPLICAS_LABEL)))
        memory = labels.get(MEMORY_LABEL)
        nodes.append(
            GpuNode(
                name=meta["name"],
                # The plugin advertises physical GPUs × replicas; a partial GPU is still a GPU.
                gpu_count=-(-advertised // replicas),
                product=labels.get(PRODUCT_LABEL, "NVIDIA-GPU"),
                memory_mib=int(memory) if memory and str(memory).isdigit() else None,
                driver_version=labels.get(DRIVER_LABEL) or _gfd_driver(labels),
                replicas=replicas,
                mig=mig,
            )
        )
    return nodes


def mig_profile(resource: str) -> str | None:
    """``nvidia.com/mig-1g.10gb`` → ``1g.10gb``; None for other resources (and shared MIG replicas,
    which the fake does not model)."""
    if not resource.startswith(MIG_RESOURCE_PREFIX) or resource.endswith(".shared"):
        return None
    return resource[len(MIG_RESOURCE_PREFIX) :] or None


def pods_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[list[GpuPod], list[str]]:
    """Running pods placed on a node that request GPUs, and warnings about ignored annotations."""
    pods: list[GpuPod] = []
    warnings: list[str] = []
    for item in items:
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        if status.get("phase") != "Running" or not spec.get("nodeName"):
            continue
        containers = spec.get("containers") or []
        whole = tuple((c.get("name", ""), count) for c in containers if (count := _whole_gpus(c)) > 0)
        mig = tuple(
            (c.get("name", ""), profile, count) for c in containers for profile, count in _mig_requests(c)
        )
        if not whole and not mig:
            continue
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        override: float | None = None
        raw = (meta.get("annotations") or {}).get(UTIL_ANNOTATION)
        if raw is not None:
            override = _percent(raw)
            if override is None:
                warnings.append(
                    f"{namespace}/{name}: ignoring {UTIL_ANNOTATION}={raw!r} (want a number 0..100)"
                )
        pods.append(
            GpuPod(
                uid=meta.get("uid") or f"{namespace}/{name}",
                namespace=namespace,
                name=name,
                node=spec["nodeName"],
                created=_timestamp(meta.get("creationTimestamp")),
                containers=whole,
                labels=dict(meta.get("labels") or {}),
                util_override=override,
                mig=mig,
                unmapped=(meta.get("annotations") or {}).get(UNMAPPED_ANNOTATION) == "true",
            )
        )
    return pods, warnings


def _requested(container: Mapping[str, Any], resource: str) -> int:
    resources = container.get("resources") or {}
    # Extended resources must have requests == limits; either may be written alone.
    for kind in ("limits", "requests"):
        value = (resources.get(kind) or {}).get(resource)
        if value is not None:
            return _count(value)
    return 0


def _whole_gpus(container: Mapping[str, Any]) -> int:
    return _requested(container, GPU_RESOURCE) + _requested(container, SHARED_GPU_RESOURCE)


def _mig_requests(container: Mapping[str, Any]) -> list[tuple[str, int]]:
    resources = container.get("resources") or {}
    names = {name for kind in ("limits", "requests") for name in resources.get(kind) or {}}
    return [
        (profile, count)
        for name in sorted(names)
        if (profile := mig_profile(name)) and (count := _requested(container, name)) > 0
    ]


def _count(value: object) -> int:
    if value is None:
        return 0
    try:
        return int(parse_quantity(str(value)))
    except InvalidQuantity:
        return 0


def _percent(raw: object) -> float | None:
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def _timestamp(raw: object) -> datetime:
    return parse_time(raw) or datetime.min.replace(tzinfo=UTC)


def _gfd_driver(labels: Mapping[str, str]) -> str | None:
    parts = [labels.get(f"nvidia.com/cuda.driver.{p}") for p in ("major", "minor", "rev")]
    return ".".join(p for p in parts if p) if all(parts) else None
