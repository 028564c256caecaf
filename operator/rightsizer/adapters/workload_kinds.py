"""Workload kinds: how the operator finds a target's pods, reads and sets its replicas, suspends it,
and tells who else scales it — one small description per kind, all registered in :data:`KINDS`.

A kind that is not registered falls back to :data:`GENERIC`: replicas and pods through its /scale
subresource, suspend through ``spec.suspend`` where the object has one. A kind is stopped the way its
own controller reads it (:class:`Suspend`): a boolean field, or an annotation. Everything here reads
and builds JSON; the requests are sent by :class:`rightsizer.adapters.kube.KubeWorkloads`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
class Suspend:
    """How a kind is stopped and resumed, as its controller reads it: a boolean field at ``path``, or
    an ``annotation`` — valued "true" (removed to resume) or, ``stamped``, present at all, valued
    with the time it was stopped."""

    path: Path | None = None
    annotation: str | None = None
    stamped: bool = False

    def state(self, obj: Mapping[str, Any]) -> bool | None:
        """Stopped or not; None when the field or annotation holds what neither means (then the
        operator leaves it alone rather than guess)."""
        if self.annotation is None:
            value = get_path(obj, self.path or ())
            return False if value is None else value if isinstance(value, bool) else None
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not isinstance(annotations, Mapping):
            return None
        value = annotations.get(self.annotation)
        if value is None:
            return False
        if not isinstance(value, str):
            return None
        if self.stamped:
            return True
        return {"true": True, "false": False}.get(value.strip().lower())

    def patch(self, suspend: bool, now: datetime) -> tuple[Any, str]:
        if self.annotation is None:
            return patch_at(self.path or (), suspend)
        value = (_rfc3339(now) if self.stamped else "true") if suspend else None
        return {"metadata": {"annotations": {self.annotation: value}}}, MERGE_PATCH


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
    suspend: Suspend | None = None
    """How the workload is stopped; None: it cannot be suspended."""
    pod_labels: tuple[str, ...] = ()
    """Labels whose value is the object's name on every pod of it; empty: the /scale selector."""
    children: tuple[tuple[str, str, str], ...] = ()
    """Objects its controller makes that another autoscaler may scale instead of it: (apiVersion,
    kind, name with ``{name}`` for the object's own)."""

    def child_targets(self, name: str) -> tuple[tuple[str, str, str], ...]:
        return tuple(
            (api_version, kind, child.format(name=name)) for api_version, kind, child in self.children
        )

    def scalable(self, obj: Mapping[str, Any]) -> ReplicasVia:
        return self.replicas_via

    def replicas(self, obj: Mapping[str, Any]) -> tuple[int, int]:
        """(desired, current) read from the object, for ``ReplicasVia.PATH``."""
        desired = _int(get_path(obj, self.replicas_path), 1)
        current = _int(get_path(obj, self.current_path), desired) if self.current_path else desired
        return desired, current

    def replicas_patch(self, obj: Mapping[str, Any], replicas: int) -> tuple[Any, str]:
        return patch_at(self.replicas_path, replicas)

    @property
    def suspend_path(self) -> Path | None:
        return self.suspend.path if self.suspend is not None else None

    def can_suspend(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend is not None and self.suspend.state(obj) is not None

    def suspended(self, obj: Mapping[str, Any]) -> bool:
        return self.suspend is not None and self.suspend.state(obj) is True

    def suspend_patch(self, suspend: bool, now: datetime | None = None) -> tuple[Any, str]:
        if self.suspend is None:
            raise ValueError(f"{self.kind} cannot be suspended")
        return self.suspend.patch(suspend, now or datetime.now(UTC))

    def pod_selectors(
        self, name: str, scale_selector: str, obj: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        """Label selectors whose pods, together, are the workload's."""
        if self.pod_labels:
            return tuple(f"{label}={name}" for label in self.pod_labels)
        return (scale_selector,)

    def scaled_by(self, obj: Mapping[str, Any]) -> str | None:
        """Another autoscaler the object itself turns on, which the operator must not fight."""
        return None


SPEC_SUSPEND = Suspend(("spec", "suspend"))


@dataclass(frozen=True)
class GenericKind(WorkloadKind):
    """Any kind with a /scale subresource; ``spec.suspend`` where the object has one."""

    suspend: Suspend | None = SPEC_SUSPEND

    def can_suspend(self, obj: Mapping[str, Any]) -> bool:
        return "suspend" in (obj.get("spec") or {}) and super().can_suspend(obj)


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


@dataclass(frozen=True)
class RayJobKind(WorkloadKind):
    """Its pods are those of the RayCluster it creates, named in its status (KubeRay labels the
    cluster's pods with ray.io/cluster only); before that it has none."""

    def pod_selectors(
        self, name: str, scale_selector: str, obj: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        cluster = get_path(obj or {}, ("status", "rayClusterName"))
        return (f"ray.io/cluster={cluster}",) if isinstance(cluster, str) and cluster else ("",)

    def scaled_by(self, obj: Mapping[str, Any]) -> str | None:
        if get_path(obj, ("spec", "rayClusterSpec", "enableInTreeAutoscaling")):
            return "Ray's in-tree autoscaler (spec.rayClusterSpec.enableInTreeAutoscaling)"
        return None


KSERVE_AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
KSERVE_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# Who KServe lets scale an InferenceService, by autoscalerClass; "none" keeps it at minReplicas.
KSERVE_AUTOSCALERS: Mapping[str, str | None] = {
    "hpa": "the HorizontalPodAutoscaler KServe creates",
    "kpa": "Knative's Pod Autoscaler",
    "keda": "the KEDA ScaledObject KServe creates",
    "external": "an external autoscaler",
    "none": None,
}


@dataclass(frozen=True)
class InferenceServiceKind(WorkloadKind):
    """Replicas belong to the autoscaler KServe runs for it, so it is never scaled by the operator."""

    def scaled_by(self, obj: Mapping[str, Any]) -> str | None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        mode = annotations.get(KSERVE_DEPLOYMENT_MODE)
        if mode in ("Serverless", "Knative"):  # Knative scales it, whatever autoscalerClass says
            return f"Knative's autoscaler ({KSERVE_DEPLOYMENT_MODE}: {mode})"
        value = annotations.get(KSERVE_AUTOSCALER_CLASS)
        said = f"{KSERVE_AUTOSCALER_CLASS}: {value or 'hpa, the default'}"
        if value is None:
            return f"{KSERVE_AUTOSCALERS['hpa']} ({said})"
        if value not in KSERVE_AUTOSCALERS:  # unknown: taken as an autoscaler, never as none
            return f"the autoscaler KServe runs for {said}"
        who = KSERVE_AUTOSCALERS[value]
        return None if who is None else f"{who} ({said})"


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
            suspend=SPEC_SUSPEND,
            # Kubernetes 1.27+ sets both; older releases only job-name.
            pod_labels=("batch.kubernetes.io/job-name", "job-name"),
        ),
        WorkloadKind(
            "jobset.x-k8s.io",
            "JobSet",
            "jobsets",
            replicas_via=ReplicasVia.NONE,
            suspend=SPEC_SUSPEND,
            pod_labels=("jobset.sigs.k8s.io/jobset-name",),
        ),
        WorkloadKind(
            # /scale is the Worker replicas; pods are every replica type's (master too).
            "kubeflow.org",
            "PyTorchJob",
            "pytorchjobs",
            suspend=Suspend(("spec", "runPolicy", "suspend")),
            pod_labels=("training.kubeflow.org/job-name",),
        ),
        RayClusterKind(
            "ray.io",
            "RayCluster",
            "rayclusters",
            replicas_via=ReplicasVia.PATH,
            replicas_path=("spec", "workerGroupSpecs", 0, "replicas"),
            current_path=("status", "availableWorkerReplicas"),
            suspend=SPEC_SUSPEND,
            pod_labels=("ray.io/cluster",),
        ),
        WorkloadKind(
            # TrainJob runs as a JobSet of its own name: its pods carry JobSet's label.
            "trainer.kubeflow.org",
            "TrainJob",
            "trainjobs",
            replicas_via=ReplicasVia.NONE,
            suspend=SPEC_SUSPEND,
            pod_labels=("jobset.sigs.k8s.io/jobset-name",),
        ),
        RayJobKind("ray.io", "RayJob", "rayjobs", replicas_via=ReplicasVia.NONE, suspend=SPEC_SUSPEND),
        InferenceServiceKind(
            "serving.kserve.io",
            "InferenceService",
            "inferenceservices",
            replicas_via=ReplicasVia.NONE,
            suspend=Suspend(annotation="serving.kserve.io/stop"),
            pod_labels=("serving.kserve.io/inferenceservice",),
            # Raw deployment mode: one Deployment per component, named after it.
            children=tuple(
                ("apps/v1", "Deployment", f"{{name}}-{component}")
                for component in ("predictor", "transformer", "explainer")
            ),
        ),
        WorkloadKind(
            # The notebook controller stops a Notebook while the annotation exists, whatever its value.
            "kubeflow.org",
            "Notebook",
            "notebooks",
            replicas_via=ReplicasVia.NONE,
            suspend=Suspend(annotation="kubeflow-resource-stopped", stamped=True),
            pod_labels=("notebook-name",),
        ),
        WorkloadKind(
            # /scale counts groups and selects leaders only; every worker of every group holds GPUs.
            "leaderworkerset.x-k8s.io",
            "LeaderWorkerSet",
            "leaderworkersets",
            pod_labels=("leaderworkerset.sigs.k8s.io/name",),
            children=(("apps/v1", "StatefulSet", "{name}"),),  # the leaders' StatefulSet
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


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
