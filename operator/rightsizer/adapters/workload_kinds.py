"""Workload kinds: how the operator finds a target's pods, reads and sets its replicas, suspends it,
and tells who else scales it — one small description per kind, all registered in :data:`KINDS`.

A kind that is not registered falls back to :data:`GENERIC`: replicas and pods through its /scale
subresource, suspend through ``spec.suspend`` where the object has one. Everything here reads and
builds JSON; the requests are sent by :class:`rightsizer.adapters.kube.KubeWorkloads`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Path = tuple[str | int, ...]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ReplicasVia(StrEnum):
    SCALE = "Scale"
    """The /scale subresource."""
    PATH = "Path"
    """A field of the object."""
    NONE = "None"
    """Not scalable: the operator can suspend it or recommend only."""


@dataclass(frozen=True)
class WorkloadKind:
    """One kind of GPU workload, as the operator reaches it."""

    group: str
    kind: str
    plural: str
    replicas_via: ReplicasVia = ReplicasVia.SCALE
    replicas_path: Path = ()
    """Where the desired count is, for ``ReplicasVia.PATH``."""
    current_path: Path = ()
    """Where the running count is, for ``ReplicasVia.PATH``; unset: the desired count."""
    suspend_path: Path | None = None
    """A boolean field that stops the workload; None: it cannot be suspended."""
    pod_labels: tuple[str, ...] = ()
    """Labels whose value is the object's name on every pod of it; empty: the /scale selector."""

    def scalable(self, obj: Mapping[str, Any]) -> ReplicasVia:
        return self.replicas_via

    def replicas(self, obj: Mapping[str, Any]) -> tuple[int, int]:
        """(desired, current) read from the object, for ``ReplicasVia.PATH``."""
        desired = _int(get_path(obj, self.replicas_path), 1)
        current = _int(get_path(obj, self.current_path), desired) if self.current_path else desired
        return desired, current

    def replicas_patch(self, obj: Mapping[str, Any], replicas: int) -> tuple[Any, str]:
        return patch_at(self.replicas_path, replicas)

    def can_suspend(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend_path is not None

    def suspended(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend_path is not None and bool(get_path(obj, self.suspend_path))

    def suspend_patch(self, suspend: bool) -> tuple[Any, str]:
        if self.suspend_path is None:
            raise ValueError(f"{self.kind} cannot be suspended")
        return patch_at(self.suspend_path, suspend)

    def pod_selectors(self, name: str, scale_selector: str) -> tuple[str, ...]:
        """Label selectors whose pods, together, are the workload's."""
        if self.pod_labels:
            return tuple(f"{label}={name}" for label in self.pod_labels)
        return (scale_selector,)

    def scaled_by(self, obj: Mapping[str, Any]) -> str | None:
        """Another autoscaler the object itself turns on, which the operator must not fight."""
        return None


@dataclass(frozen=True)
class GenericKind(WorkloadKind):
    """Any kind with a /scale subresource; ``spec.suspend`` where the object has one."""

    suspend_path: Path | None = ("spec", "suspend")

    def can_suspend(self, obj: Mapping[str, Any]) -> bool:
        return "suspend" in (obj.get("spec") or {})

    def suspended(self, obj: Mapping[str, Any]) -> bool:
        return bool((obj.get("spec") or {}).get("suspend"))


@dataclass(frozen=True)
class RayClusterKind(WorkloadKind):
    """Replicas are the one worker group's: with several groups, which one to change is the user's
    call, so the cluster is suspended or recommended on, never scaled."""

    def scalable(self, obj: Mapping[str, Any]) -> ReplicasVia:
        groups = (obj.get("spec") or {}).get("workerGroupSpecs") or []
        return ReplicasVia.PATH if len(groups) == 1 else ReplicasVia.NONE

    def scaled_by(self, obj: Mapping[str, Any]) -> str | None:
        if (obj.get("spec") or {}).get("enableInTreeAutoscaling"):
            return "Ray's in-tree autoscaler (spec.enableInTreeAutoscaling)"
        return None


GENERIC = GenericKind(group="", kind="", plural="")

KINDS: Mapping[tuple[str, str], WorkloadKind] = {
    (k.group, k.kind): k
    for k in (
        GenericKind("apps", "Deployment", "deployments"),
        GenericKind("apps", "StatefulSet", "statefulsets"),
        WorkloadKind(
            "batch",
            "Job",
            "jobs",
            replicas_via=ReplicasVia.PATH,
            replicas_path=("spec", "parallelism"),
            current_path=("status", "active"),
            suspend_path=("spec", "suspend"),
            # Kubernetes 1.27+ sets both; older releases only job-name.
            pod_labels=("batch.kubernetes.io/job-name", "job-name"),
        ),
        WorkloadKind(
            "jobset.x-k8s.io",
            "JobSet",
            "jobsets",
            replicas_via=ReplicasVia.NONE,
            suspend_path=("spec", "suspend"),
            pod_labels=("jobset.sigs.k8s.io/jobset-name",),
        ),
        WorkloadKind(
            # /scale is the Worker replicas; pods are every replica type's (master too).
            "kubeflow.org",
            "PyTorchJob",
            "pytorchjobs",
            suspend_path=("spec", "runPolicy", "suspend"),
            pod_labels=("training.kubeflow.org/job-name",),
        ),
        RayClusterKind(
            "ray.io",
            "RayCluster",
            "rayclusters",
            replicas_via=ReplicasVia.PATH,
            replicas_path=("spec", "workerGroupSpecs", 0, "replicas"),
            current_path=("status", "availableWorkerReplicas"),
            suspend_path=("spec", "suspend"),
            pod_labels=("ray.io/cluster",),
        ),
        WorkloadKind(
            # /scale counts groups and selects leaders only; every worker of every group holds GPUs.
            "leaderworkerset.x-k8s.io",
            "LeaderWorkerSet",
            "leaderworkersets",
            pod_labels=("leaderworkerset.sigs.k8s.io/name",),
        ),
    )
}


def kind_for(group: str, kind: str) -> WorkloadKind:
    return KINDS.get((group, kind), GENERIC)


def supported_kinds() -> str:
    """The registered kinds, for messages that say what a targetRef may name."""
    return ", ".join(k.kind for k in KINDS.values())


def get_path(obj: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    value: Any = obj
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, Mapping) else None
        if value is None:
            return None
    return value


def patch_at(path: Path, value: object) -> tuple[Any, str]:
    """A body setting one field: a merge patch (creates missing parents) unless the path crosses a
    list, which only a JSON patch can reach into."""
    if any(isinstance(step, int) for step in path):
        pointer = "/" + "/".join(str(s).replace("~", "~0").replace("/", "~1") for s in path)
        return [{"op": "add", "path": pointer, "value": value}], JSON_PATCH
    body: Any = value
    for step in reversed(path):
        body = {step: body}
    return body, MERGE_PATCH


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
