"""Jobs queued by Kueue. Kueue admits a job by clearing its suspend field and sets it again whenever
the job's Workload is not admitted, so writing the job's own field starts a fight that Kueue wins. The
knob Kueue respects is its Workload's ``spec.active``: false evicts the job and frees its quota, true
lets it queue again. Kueue also owns the job's replica count (what it admitted), so the operator never
changes it. Requests go through the caller's ``call`` (:class:`rightsizer.adapters.kube.KubeWorkloads`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from rightsizer.adapters.workload_kinds import MERGE_PATCH, ReplicasVia, WorkloadKind, get_path
from rightsizer.core.errors import RightsizerError

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
"""Kueue labels each Workload with the UID of the job it stands for."""
WORKLOADS_APIS = ("/apis/kueue.x-k8s.io/v1beta2", "/apis/kueue.x-k8s.io/v1beta1")
"""Where Workloads are served, newest first: v1beta2 since Kueue v0.15 (its storage version since
v0.16, where v1beta1 is deprecated), v1beta1 alone before."""


class WorkloadUnreachable(RightsizerError):
    def __init__(self, namespace: str, obj: Mapping[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        super().__init__(
            f"{obj.get('kind')} {namespace}/{name} is queued by Kueue ({QUEUE_LABEL}: {queue_of(obj)}) and "
            "its Kueue Workload cannot be found or read: it is suspended through the Workload only; "
            "grant the operator Kueue Workloads (rbac.workloadKinds: Kueue)"
        )


class Call(Protocol):
    """One request as JSON, with the caller's credentials and retries."""

    def __call__(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]: ...


def queue_of(obj: Mapping[str, Any]) -> str | None:
    """The LocalQueue a job was submitted to; None for a job Kueue does not manage."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    queue = labels.get(QUEUE_LABEL) if isinstance(labels, Mapping) else None
    return queue if isinstance(queue, str) and queue else None


def queued(kind: WorkloadKind, obj: Mapping[str, Any]) -> bool:
    """A job Kueue gates through its suspend field (which Kueue's webhook sets on a queued job): it
    names a queue and has the field. A Deployment Kueue queues pod by pod has none, and stays
    scalable."""
    path = kind.suspend_path
    return path is not None and get_path(obj, path) is not None and queue_of(obj) is not None


def gate(
    call: Call, namespace: str, kind: WorkloadKind, obj: Mapping[str, Any], via: ReplicasVia
) -> tuple[bool, bool, ReplicasVia]:
    """(can suspend, suspended, replicas via) of a target as Kueue leaves them: a queued job is
    suspended through its Workload, or not at all where none can be read, and never scaled."""
    can_suspend, suspended = kind.can_suspend(obj), kind.suspended(obj)
    if not queued(kind, obj):
        return can_suspend, suspended, via
    active = is_active(find_workload(call, namespace, obj))
    return active is not None, suspended or active is False, ReplicasVia.NONE


def set_active(call: Call, namespace: str, kind: WorkloadKind, obj: Mapping[str, Any], active: bool) -> bool:
    """Deactivate or reactivate a queued job's Workload; False for a job Kueue does not queue."""
    if not queued(kind, obj):
        return False
    found = _find(call, namespace, obj)
    if found is None:
        raise WorkloadUnreachable(namespace, obj)
    api, workload = found
    name = (workload.get("metadata") or {}).get("name")
    call("PATCH", f"{api}/namespaces/{namespace}/workloads/{name}", *active_patch(active))
    return True


def find_workload(call: Call, namespace: str, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The queued job's Workload; None while Kueue has not made it, where Kueue is not installed, or
    where the operator may not list Workloads."""
    found = _find(call, namespace, obj)
    return None if found is None else found[1]


def _find(call: Call, namespace: str, obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(the API it is served at, the Workload), at the newest version this Kueue serves."""
    uid = str((obj.get("metadata") or {}).get("uid") or "")
    for api in WORKLOADS_APIS:
        path = f"{api}/namespaces/{namespace}/workloads?labelSelector={JOB_UID_LABEL}%3D{uid}"
        try:
            listing = call("GET", path)
        except ApiException as exc:
            if exc.status == 404:  # a Kueue that does not serve this version (or no Kueue at all)
                continue
            if exc.status == 403:
                return None
            raise
        workload = workload_of(listing, obj)
        return None if workload is None else (api, workload)
    return None


def workload_of(listing: Mapping[str, Any], obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Workload the job controls, of those listed: the label is a hint, the owner reference the
    proof. None while Kueue has not created it."""
    uid = (obj.get("metadata") or {}).get("uid")
    for item in listing.get("items") or []:
        owners = (item.get("metadata") or {}).get("ownerReferences") or []
        if any(o.get("uid") == uid and o.get("controller") for o in owners if isinstance(o, Mapping)):
            return dict(item)
    return None


def is_active(workload: Mapping[str, Any] | None) -> bool | None:
    """spec.active as Kueue reads it (absent: active); None without a Workload or when it holds
    something else."""
    if workload is None:
        return None
    value = (workload.get("spec") or {}).get("active", True)
    return value if isinstance(value, bool) else None


def active_patch(active: bool) -> tuple[Any, str]:
    return {"spec": {"active": active}}, MERGE_PATCH
