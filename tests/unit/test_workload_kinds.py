"""Each workload kind's adapter: where its replicas and suspend field are, which labels find its pods,
and who else scales it; unregistered kinds fall back to /scale."""

from __future__ import annotations

from typing import Any

import pytest

from rightsizer.adapters.kube import Scale
from rightsizer.adapters.workload_kinds import (
    GENERIC,
    JSON_PATCH,
    MERGE_PATCH,
    ReplicasVia,
    kind_for,
)

RAY: dict[str, Any] = {
    "spec": {"workerGroupSpecs": [{"replicas": 3}]},
    "status": {"availableWorkerReplicas": 2},
}


@pytest.mark.parametrize(
    ("group", "kind", "labels"),
    [
        ("batch", "Job", ("batch.kubernetes.io/job-name=w", "job-name=w")),
        ("jobset.x-k8s.io", "JobSet", ("jobset.sigs.k8s.io/jobset-name=w",)),
        ("kubeflow.org", "PyTorchJob", ("training.kubeflow.org/job-name=w",)),
        ("ray.io", "RayCluster", ("ray.io/cluster=w",)),
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", ("leaderworkerset.sigs.k8s.io/name=w",)),
        ("apps", "Deployment", ("app=w",)),
        ("example.com", "Custom", ("app=w",)),
    ],
)
def test_pods_are_found_by_the_kinds_own_labels_or_the_scale_selector(
    group: str, kind: str, labels: tuple[str, ...]
) -> None:
    assert kind_for(group, kind).pod_selectors("w", "app=w") == labels


@pytest.mark.parametrize(
    ("group", "kind", "via", "suspend"),
    [
        ("apps", "Deployment", ReplicasVia.SCALE, ("spec", "suspend")),
        ("batch", "Job", ReplicasVia.PATH, ("spec", "suspend")),
        ("jobset.x-k8s.io", "JobSet", ReplicasVia.NONE, ("spec", "suspend")),
        ("kubeflow.org", "PyTorchJob", ReplicasVia.SCALE, ("spec", "runPolicy", "suspend")),
        ("ray.io", "RayCluster", ReplicasVia.PATH, ("spec", "suspend")),
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", ReplicasVia.SCALE, None),
    ],
)
def test_each_kind_keeps_replicas_and_suspend_where_its_api_does(
    group: str, kind: str, via: ReplicasVia, suspend: tuple[str, ...] | None
) -> None:
    adapter = kind_for(group, kind)
    assert adapter.scalable(RAY) is via
    assert adapter.suspend_path == suspend


def test_job_replicas_are_parallelism_and_active_pods() -> None:
    job = kind_for("batch", "Job")
    assert job.replicas({"spec": {"parallelism": 4}, "status": {"active": 3}}) == (4, 3)
    assert job.replicas_patch({}, 2) == ({"spec": {"parallelism": 2}}, MERGE_PATCH)


def test_raycluster_replicas_are_its_worker_group_written_by_json_patch() -> None:
    ray = kind_for("ray.io", "RayCluster")
    assert ray.replicas(RAY) == (3, 2)
    body, content_type = ray.replicas_patch(RAY, 1)
    assert content_type == JSON_PATCH
    assert body == [{"op": "add", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}]


def test_raycluster_of_several_groups_is_not_scaled_and_its_in_tree_autoscaler_is_a_conflict() -> None:
    ray = kind_for("ray.io", "RayCluster")
    two = {"spec": {"workerGroupSpecs": [{"replicas": 1}, {"replicas": 2}], "enableInTreeAutoscaling": True}}
    assert ray.scalable(two) is ReplicasVia.NONE
    assert "enableInTreeAutoscaling" in (ray.scaled_by(two) or "")
    assert ray.scaled_by(RAY) is None


def test_suspend_is_a_merge_patch_that_creates_missing_parents() -> None:
    job = kind_for("kubeflow.org", "PyTorchJob")
    assert job.suspend_patch(True) == ({"spec": {"runPolicy": {"suspend": True}}}, MERGE_PATCH)
    assert job.suspended({"spec": {"runPolicy": {"suspend": True}}})
    assert not job.suspended({"spec": {}})


def test_a_kind_without_suspend_cannot_be_suspended() -> None:
    lws = kind_for("leaderworkerset.x-k8s.io", "LeaderWorkerSet")
    assert not lws.can_suspend({"spec": {"suspend": True}})
    with pytest.raises(ValueError, match="LeaderWorkerSet"):
        lws.suspend_patch(True)


def test_the_generic_kind_suspends_only_objects_that_have_spec_suspend() -> None:
    assert kind_for("example.com", "Custom") is GENERIC
    assert GENERIC.can_suspend({"spec": {"suspend": False}})
    assert not GENERIC.can_suspend({"spec": {"replicas": 1}})


@pytest.mark.parametrize(
    ("can_scale", "can_suspend", "actions"),
    [
        (True, True, "Scale,Suspend"),
        (True, False, "Scale"),
        (False, True, "Suspend"),
        (False, False, "RecommendOnly"),
    ],
)
def test_status_says_what_the_operator_can_do_with_the_target(
    can_scale: bool, can_suspend: bool, actions: str
) -> None:
    assert Scale(1, 1, "", can_suspend=can_suspend, can_scale=can_scale).actions == actions
