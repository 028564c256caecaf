"""The workload-kind adapters against the real API server and the kinds' real schemas (RayCluster and
PyTorchJob from their modules, stand-ins for JobSet and LeaderWorkerSet, batch Job built in): replicas
read and set where each kind keeps them, suspend, and the pods found by each kind's labels."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.kube import KubeWorkloads, TargetNotFound, TargetNotScalable, TargetRef
from tests.support.cluster import Cluster
from tests.support.workload_kinds import (
    batch_job,
    install_crds,
    jobset,
    leader_worker_set,
    pod,
    pytorch_job,
    ray_cluster,
)


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: Cluster) -> None:
    install_crds(cluster)


def get(cluster: Cluster, namespace: str, ref: TargetRef) -> dict[str, Any]:
    group, version = ref.api_version.split("/")
    plural = {"RayCluster": "rayclusters", "PyTorchJob": "pytorchjobs", "JobSet": "jobsets"}[ref.kind]
    api = client.CustomObjectsApi(cluster.api)
    return dict(api.get_namespaced_custom_object(group, version, namespace, plural, ref.name))


def found(cluster: Cluster, namespace: str, selectors: tuple[str, ...]) -> list[str]:
    """The pods the API server returns for the target's selectors, as the operator's cache holds them."""
    core = client.CoreV1Api(cluster.api)
    names = {
        p.metadata.name
        for s in selectors
        for p in core.list_namespaced_pod(namespace, label_selector=s).items
    }
    return sorted(names)


def test_raycluster_replicas_are_its_worker_group_and_suspend_is_spec_suspend(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(ray_cluster("ray", 3), namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("ray.io/v1", "RayCluster", "ray")
    scale = kube.read_scale(namespace, ref)
    assert (scale.desired, scale.can_scale, scale.can_suspend, scale.suspended) == (3, True, True, False)
    assert scale.selectors == ("ray.io/cluster=ray",)
    kube.set_replicas(namespace, ref, 1)
    kube.suspend(namespace, ref)
    spec = get(cluster, namespace, ref)["spec"]
    assert (spec["workerGroupSpecs"][0]["replicas"], spec["suspend"]) == (1, True)
    assert kube.read_scale(namespace, ref).suspended


def test_raycluster_of_several_groups_is_not_scaled_and_its_autoscaler_is_named(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(ray_cluster("ray", 2, groups=2, autoscaling=True), namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("ray.io/v1", "RayCluster", "ray")
    scale = kube.read_scale(namespace, ref)
    assert (scale.can_scale, scale.actions) == (False, "Suspend")
    assert scale.scaled_by is not None and "enableInTreeAutoscaling" in scale.scaled_by
    with pytest.raises(TargetNotScalable):
        kube.set_replicas(namespace, ref, 1)


def test_pytorchjob_scales_workers_through_scale_and_suspends_through_run_policy(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(pytorch_job("train", 2), namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("kubeflow.org/v1", "PyTorchJob", "train")
    scale = kube.read_scale(namespace, ref)
    assert (scale.desired, scale.actions) == (2, "Scale,Suspend")
    assert scale.selectors == ("training.kubeflow.org/job-name=train",)
    kube.set_replicas(namespace, ref, 4)
    kube.suspend(namespace, ref)
    spec = get(cluster, namespace, ref)["spec"]
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 4
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert spec["runPolicy"]["suspend"] is True


def test_jobset_is_suspended_not_scaled_and_its_pods_are_found_by_its_label(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(jobset("js"), namespace)
    label = {"jobset.sigs.k8s.io/jobset-name": "js"}
    cluster.apply([pod("js-0", label), pod("js-1", label), pod("other", {"app": "x"})], namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("jobset.x-k8s.io/v1alpha2", "JobSet", "js")
    scale = kube.read_scale(namespace, ref)
    assert (scale.can_scale, scale.can_suspend, scale.actions) == (False, True, "Suspend")
    kube.suspend(namespace, ref)
    assert get(cluster, namespace, ref)["spec"]["suspend"] is True
    assert found(cluster, namespace, scale.selectors) == ["js-0", "js-1"]


def test_leaderworkerset_counts_groups_and_finds_every_worker(cluster: Cluster, namespace: str) -> None:
    cluster.apply(leader_worker_set("lws", 2), namespace)
    label = "leaderworkerset.sigs.k8s.io/name"
    pods = [pod(f"lws-{g}{'' if w == 0 else f'-{w}'}", {label: "lws"}) for g in range(2) for w in range(2)]
    cluster.apply(pods, namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "lws")
    scale = kube.read_scale(namespace, ref)
    assert (scale.desired, scale.actions) == (2, "Scale")
    kube.set_replicas(namespace, ref, 3)
    assert kube.read_scale(namespace, ref).desired == 3
    assert len(found(cluster, namespace, scale.selectors)) == 4


def test_batch_job_scales_parallelism_and_finds_pods_by_either_job_label(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(batch_job("job", 2), namespace)
    kube = KubeWorkloads(cluster.api)
    ref = TargetRef("batch/v1", "Job", "job")
    scale = kube.read_scale(namespace, ref)
    assert (scale.desired, scale.actions, scale.suspended) == (2, "Scale,Suspend", True)
    assert scale.selectors == ("batch.kubernetes.io/job-name=job", "job-name=job")
    kube.set_replicas(namespace, ref, 3)
    kube.suspend(namespace, ref, suspend=False)
    job = client.BatchV1Api(cluster.api).read_namespaced_job("job", namespace)
    assert (job.spec.parallelism, job.spec.suspend) == (3, False)


def test_a_kind_whose_crd_is_missing_is_not_found_and_one_without_scale_or_adapter_is_not_scalable(
    cluster: Cluster, namespace: str
) -> None:
    kube = KubeWorkloads(cluster.api)
    # A kind no test installs: the workload kinds' own CRDs may be there from an earlier test.
    with pytest.raises(TargetNotFound, match=r"serves no Widget in example\.com/v1"):
        kube.read_scale(namespace, TargetRef("example.com/v1", "Widget", "t"))
    with pytest.raises(TargetNotScalable, match="RayCluster"):
        kube.read_scale(namespace, TargetRef("v1", "ConfigMap", "kube-root-ca.crt"))
