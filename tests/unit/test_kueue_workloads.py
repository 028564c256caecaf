"""Jobs Kueue queues are suspended through their Kueue Workload (spec.active), never through their own
suspend field, which Kueue owns; their replica count is Kueue's admission's, never changed."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from rightsizer.adapters import kueue
from rightsizer.adapters.workload_kinds import ReplicasVia, kind_for

JOB = kind_for("batch", "Job")
UID = "0c6f7a52-3c1e-4c41-9d7a-6a1d2b0e6f11"


def job(queue: str | None = "gpu", suspend: bool = False) -> dict[str, Any]:
    labels = {} if queue is None else {kueue.QUEUE_LABEL: queue}
    return {
        "kind": "Job",
        "metadata": {"name": "train", "uid": UID, "labels": labels},
        "spec": {"parallelism": 2, "suspend": suspend},
    }


def deployment() -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "serve", "uid": UID, "labels": {kueue.QUEUE_LABEL: "gpu"}},
        "spec": {"replicas": 2},
    }


def workload(active: object = None, owner: str = UID, controller: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"queueName": "gpu"}
    if active is not None:
        spec["active"] = active
    owners = [{"kind": "Job", "name": "train", "uid": owner, "controller": controller}]
    return {"metadata": {"name": "job-train-1a2b3", "ownerReferences": owners}, "spec": spec}


class FakeApi:
    """Answers the Workload list with `items` (or fails with `status`) and records every call; a
    version in `unserved` answers 404, as a Kueue that does not serve it."""

    def __init__(
        self, items: list[dict[str, Any]], status: int | None = None, unserved: tuple[str, ...] = ()
    ) -> None:
        self.items, self.status, self.unserved = items, status, unserved
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        self.calls.append((method, path, body))
        if self.status is not None:
            raise ApiException(status=self.status)
        if any(f"/kueue.x-k8s.io/{version}/" in path for version in self.unserved):
            raise ApiException(status=404)
        return {"items": self.items} if method == "GET" else {}


@pytest.mark.parametrize(
    ("obj", "adapter", "queued"),
    [
        (job(), JOB, True),
        (job(queue=None), JOB, False),
        (job(queue=""), JOB, False),
        # A kind with no suspend field is not one Kueue gates by suspending it.
        (job(), kind_for("leaderworkerset.x-k8s.io", "LeaderWorkerSet"), False),
        # Nor is a Deployment (Kueue queues its pods one by one): it stays scalable.
        (deployment(), kind_for("apps", "Deployment"), False),
    ],
)
def test_a_job_is_kueues_when_it_names_a_queue_and_has_a_suspend_field(
    obj: dict[str, Any], adapter: Any, queued: bool
) -> None:
    assert kueue.queued(adapter, obj) is queued


@pytest.mark.parametrize(
    ("items", "status", "expected"),
    [
        ([workload()], None, (True, False)),
        ([workload(active=True)], None, (True, False)),
        ([workload(active=False)], None, (True, True)),
        # No Workload yet, Kueue not installed, or no right to read Workloads: never suspended by hand.
        ([], None, (False, False)),
        ([], 404, (False, False)),
        ([], 403, (False, False)),
        # Owned by another job, or not as controller: not this job's.
        ([workload(owner="other")], None, (False, False)),
        ([workload(controller=False)], None, (False, False)),
        # Unreadable: left alone.
        ([workload(active="no")], None, (False, False)),
    ],
)
def test_a_queued_job_is_suspended_as_its_workload_says_and_never_scaled(
    items: list[dict[str, Any]], status: int | None, expected: tuple[bool, bool]
) -> None:
    api = FakeApi(items, status)
    can_suspend, suspended, via = kueue.gate(api, "ns", JOB, job(), ReplicasVia.PATH)
    assert (can_suspend, suspended, via) == (*expected, ReplicasVia.NONE)
    method, path, _ = api.calls[0]
    assert (method, path) == (
        "GET",
        f"/apis/kueue.x-k8s.io/v1beta2/namespaces/ns/workloads?labelSelector=kueue.x-k8s.io/job-uid%3D{UID}",
    )


def test_a_job_waiting_for_admission_reads_as_suspended() -> None:
    can_suspend, suspended, _ = kueue.gate(
        FakeApi([workload()]), "ns", JOB, job(suspend=True), ReplicasVia.PATH
    )
    assert (can_suspend, suspended) == (True, True)


def test_a_job_kueue_does_not_queue_keeps_its_own_suspend_field_and_count() -> None:
    api = FakeApi([])
    assert kueue.gate(api, "ns", JOB, job(queue=None), ReplicasVia.PATH) == (True, False, ReplicasVia.PATH)
    assert not kueue.set_active(api, "ns", JOB, job(queue=None), False)
    assert api.calls == []


@pytest.mark.parametrize("active", [False, True])
def test_suspending_and_resuming_a_queued_job_sets_its_workloads_active_field(active: bool) -> None:
    api = FakeApi([workload()])
    assert kueue.set_active(api, "ns", JOB, job(), active)
    assert api.calls[-1] == (
        "PATCH",
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/ns/workloads/job-train-1a2b3",
        {"spec": {"active": active}},
    )
    assert all("/jobs/" not in path for _, path, _ in api.calls), "the job's own suspend is Kueue's"


@pytest.mark.parametrize(("items", "status"), [([], None), ([], 403)])
def test_suspending_a_queued_job_whose_workload_cannot_be_reached_says_what_to_grant(
    items: list[dict[str, Any]], status: int | None
) -> None:
    with pytest.raises(kueue.WorkloadUnreachable, match=r"rbac.workloadKinds: Kueue"):
        kueue.set_active(FakeApi(items, status), "ns", JOB, job(), False)


def test_other_failures_to_list_workloads_are_not_taken_as_no_workload() -> None:
    with pytest.raises(ApiException):
        kueue.gate(FakeApi([], 500), "ns", JOB, job(), ReplicasVia.PATH)


def test_a_kueue_serving_only_v1beta1_has_its_workloads_read_and_deactivated_there() -> None:
    """Kueue before v0.15 serves Workloads at v1beta1 only; later ones at v1beta2 (v1beta1 deprecated)."""
    api = FakeApi([workload()], unserved=("v1beta2",))
    assert kueue.gate(api, "ns", JOB, job(), ReplicasVia.PATH) == (True, False, ReplicasVia.NONE)
    assert kueue.set_active(api, "ns", JOB, job(), False)
    assert [path.split("/")[3] for _, path, _ in api.calls] == ["v1beta2", "v1beta1"] * 2 + ["v1beta1"]
    assert api.calls[-1][0] == "PATCH"


def test_without_kueue_each_version_is_asked_once() -> None:
    api = FakeApi([], unserved=("v1beta2", "v1beta1"))
    assert kueue.gate(api, "ns", JOB, job(), ReplicasVia.PATH) == (False, False, ReplicasVia.NONE)
    assert [path.split("/")[3] for _, path, _ in api.calls] == ["v1beta2", "v1beta1"]
