"""GPU workloads that are not Deployments, through the real operator with the chart's RBAC for their
kinds: an idle RayCluster (real CRD) is suspended through spec.suspend, and `kubectl get gw` says what
the operator can do with each target; idle KServe InferenceServices and Kubeflow Notebooks are stopped
through the annotation their controllers read, idle TrainJobs and RayJobs through spec.suspend, and an
idle job Kueue queues through its Kueue Workload (real CRD), never its own suspend field. No KubeRay,
JobSet, KServe, notebook, trainer or Kueue controller runs: the test creates the pods and Workloads
they would, with their labels and owners (tests/e2e/test_kueue.py runs the real Kueue)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.workload_kinds import (
    inference_service,
    install_crds,
    install_kueue_workload_crd,
    install_stop_kind_crds,
    jobset,
    notebook,
    ray_cluster,
    ray_job,
    train_job,
)
from tests.support.world import gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

RAY = {"ray.io/cluster": "ray"}
JOBSET = {"jobset.sigs.k8s.io/jobset-name": "js"}


@pytest.fixture
def identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("kinds-identity")
    values = {"rbac": {"workloadKinds": ["RayCluster", "JobSet"]}}
    with chart_identity(cluster.kubeconfig, workdir, values) as kubeconfig:
        yield kubeconfig


def gpu_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod as the kind's controller would create it, scheduled onto a fake A100 node."""
    template = gpu_deployment(name, 1)["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": template["spec"],
    }


def training(name: str, api_version: str, kind: str, **spec: Any) -> dict[str, Any]:
    return gpu_workload(
        name,
        name,
        targetRef={"apiVersion": api_version, "kind": kind, "name": name},
        workloadType="Training",
        minReplicas=None,
        maxReplicas=None,
        **spec,
    )


def kubectl_get_gw(cluster: Cluster, namespace: str) -> str:
    """`kubectl get gw` as a user sees it."""
    return str(cluster.kubectl("get", "gw", "-n", namespace).stdout)


def test_an_idle_raycluster_is_suspended_and_get_gw_shows_what_each_kind_allows(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization, identity: str
) -> None:
    install_crds(cluster)
    cluster.apply([ray_cluster("ray", 2), jobset("js")], namespace)
    pods = [gpu_pod("ray-head", RAY), gpu_pod("ray-worker-0", RAY), gpu_pod("js-workers-0-0", JOBSET)]
    cluster.apply(pods, namespace)
    gpu_util.set(namespace, 0, selector=RAY)
    gpu_util.set(namespace, 80, selector=JOBSET)
    policy = {"thresholdPercent": 5, "idleFor": "5s", "action": "Suspend"}
    cluster.apply(
        [
            training("ray", "ray.io/v1", "RayCluster", idlePolicy=policy),
            training("js", "jobset.x-k8s.io/v1alpha2", "JobSet", mode="Recommend"),
        ],
        namespace,
    )
    custom = client.CustomObjectsApi(cluster.api)

    def ray_suspended() -> bool:
        ray = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", "ray")
        return bool(ray["spec"].get("suspend"))

    def get_gw() -> str:
        return kubectl_get_gw(cluster, namespace)

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, identity=identity, cluster_wide=True
    ) as operator:
        wait_for(ray_suspended, timeout=60, describe=lambda: f"{get_gw()}\n{operator.log()[-3000:]}")
        wait_for(lambda: "JobSet" in get_gw(), timeout=30, describe=get_gw)
        table = get_gw().splitlines()
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert table[0].split()[:4] == ["NAME", "TYPE", "TARGET", "CAN"]
    assert rows["ray"][2:4] == ["RayCluster", "Scale,Suspend"]
    assert rows["js"][2:4] == ["JobSet", "Suspend"]
    js = custom.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", namespace, "jobsets", "js")
    assert js["spec"]["suspend"] is False, "a busy JobSet in Recommend mode is left alone"


ISVC = {"serving.kserve.io/inferenceservice": "isvc"}
ISVC_HPA = {"serving.kserve.io/inferenceservice": "isvc-hpa"}
ISVC_CHILD = {"serving.kserve.io/inferenceservice": "isvc-child"}
NOTEBOOK = {"notebook-name": "nb"}
TRAINJOB = {"jobset.sigs.k8s.io/jobset-name": "tj"}
RAYJOB_CLUSTER = "rj-7xk2p"  # the RayCluster KubeRay would create for RayJob rj
RAYJOB = {"ray.io/cluster": RAYJOB_CLUSTER}
IDLE = {"thresholdPercent": 5, "idleFor": "5s", "action": "Suspend"}
EVERY_KIND = ["Job", "TrainJob", "RayJob", "InferenceService", "Notebook", "Kueue"]


@pytest.fixture
def every_kind_identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("every-kind-identity")
    with chart_identity(cluster.kubeconfig, workdir, {"rbac": {"workloadKinds": EVERY_KIND}}) as kubeconfig:
        yield kubeconfig


def annotations_of(
    custom: client.CustomObjectsApi, namespace: str, group: str, plural: str, name: str
) -> Any:
    version = {"serving.kserve.io": "v1beta1", "kubeflow.org": "v1"}[group]
    obj = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    return obj["metadata"].get("annotations") or {}


def conditions(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    gw = custom.get_namespaced_custom_object("rightsizer.io", "v1alpha1", namespace, "gpuworkloads", name)
    return {c["type"]: c for c in (gw.get("status") or {}).get("conditions") or []}


def test_idle_inferenceservice_notebook_trainjob_and_rayjob_are_stopped_as_their_controllers_read_it(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization, every_kind_identity: str
) -> None:
    install_stop_kind_crds(cluster)
    autoscaler_none = {"serving.kserve.io/autoscalerClass": "none"}
    cluster.apply(
        [
            inference_service("isvc", autoscaler_none),
            inference_service("isvc-hpa"),
            inference_service("isvc-child", autoscaler_none),
            # A user's own HPA on the Deployment KServe makes for the predictor.
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "predictor"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "isvc-child-predictor",
                    },
                    "minReplicas": 1,
                    "maxReplicas": 4,
                },
            },
            notebook("nb"),
            train_job("tj"),
            ray_job("rj"),
        ],
        namespace,
    )
    custom = client.CustomObjectsApi(cluster.api)
    # KubeRay names the RayJob's cluster in its status: the pods are found through it.
    status = {"status": {"rayClusterName": RAYJOB_CLUSTER}}
    custom.patch_namespaced_custom_object_status("ray.io", "v1", namespace, "rayjobs", "rj", status)
    pods = [
        gpu_pod("isvc-predictor-0", ISVC),
        gpu_pod("isvc-hpa-predictor-0", ISVC_HPA),
        gpu_pod("isvc-child-predictor-0", ISVC_CHILD),
        gpu_pod("nb-0", NOTEBOOK),
        gpu_pod("tj-node-0-0", TRAINJOB),
        gpu_pod("tj-node-0-1", TRAINJOB),
        gpu_pod("rj-head", RAYJOB),
        gpu_pod("rj-worker-0", RAYJOB),
    ]
    cluster.apply(pods, namespace)
    for labels in (ISVC, ISVC_HPA, ISVC_CHILD, NOTEBOOK, TRAINJOB, RAYJOB):
        gpu_util.set(namespace, 0, selector=labels)
    cluster.apply(
        [
            training("isvc", "serving.kserve.io/v1beta1", "InferenceService", idlePolicy=IDLE),
            training("isvc-hpa", "serving.kserve.io/v1beta1", "InferenceService", idlePolicy=IDLE),
            training("isvc-child", "serving.kserve.io/v1beta1", "InferenceService", idlePolicy=IDLE),
            training("nb", "kubeflow.org/v1", "Notebook", idlePolicy=IDLE),
            training("tj", "trainer.kubeflow.org/v1alpha1", "TrainJob", idlePolicy=IDLE),
            training("rj", "ray.io/v1", "RayJob", idlePolicy=IDLE),
        ],
        namespace,
    )

    def suspended(plural: str, group: str, version: str, name: str) -> bool:
        obj = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        return obj["spec"].get("suspend") is True

    def stopped() -> dict[str, bool]:
        return {
            "isvc": annotations_of(custom, namespace, "serving.kserve.io", "inferenceservices", "isvc").get(
                "serving.kserve.io/stop"
            )
            == "true",
            "nb": "kubeflow-resource-stopped"
            in annotations_of(custom, namespace, "kubeflow.org", "notebooks", "nb"),
            "tj": suspended("trainjobs", "trainer.kubeflow.org", "v1alpha1", "tj"),
            "rj": suspended("rayjobs", "ray.io", "v1", "rj"),
        }

    def get_gw() -> str:
        return kubectl_get_gw(cluster, namespace)

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, identity=every_kind_identity, cluster_wide=True
    ) as operator:
        wait_for(
            lambda: all(stopped().values()),
            timeout=90,
            describe=lambda: f"{stopped()}\n{get_gw()}\n{operator.log()[-3000:]}",
        )
        wait_for(
            lambda: conditions(custom, namespace, "isvc-hpa").get("Conflict", {}).get("status") == "True",
            timeout=30,
            describe=lambda: f"{conditions(custom, namespace, 'isvc-hpa')}",
        )
        wait_for(
            lambda: conditions(custom, namespace, "isvc-child").get("Conflict", {}).get("status") == "True",
            timeout=30,
            describe=lambda: f"{conditions(custom, namespace, 'isvc-child')}",
        )
        table = get_gw().splitlines()
        conflict = conditions(custom, namespace, "isvc-hpa")["Conflict"]
        on_child = conditions(custom, namespace, "isvc-child")["Conflict"]["message"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert {name: rows[name][2:4] for name in ("isvc", "nb", "tj", "rj")} == {
        "isvc": ["InferenceService", "Suspend"],
        "nb": ["Notebook", "Suspend"],
        "tj": ["TrainJob", "Suspend"],
        "rj": ["RayJob", "Suspend"],
    }
    stamp = annotations_of(custom, namespace, "kubeflow.org", "notebooks", "nb")["kubeflow-resource-stopped"]
    assert stamp.endswith("Z") and "T" in stamp, f"an RFC 3339 time, as the notebook culler writes: {stamp}"
    assert conflict["status"] == "True" and "HorizontalPodAutoscaler KServe creates" in conflict["message"]
    hpa_isvc = annotations_of(custom, namespace, "serving.kserve.io", "inferenceservices", "isvc-hpa")
    assert "serving.kserve.io/stop" not in hpa_isvc, "KServe's autoscaler scales it: the operator holds"
    assert "HorizontalPodAutoscaler/predictor (on its Deployment isvc-child-predictor)" in on_child, on_child
    child_isvc = annotations_of(custom, namespace, "serving.kserve.io", "inferenceservices", "isvc-child")
    assert "serving.kserve.io/stop" not in child_isvc, "an HPA scales its predictor: the operator holds"


def kueue_job(name: str, queue: str) -> dict[str, Any]:
    """A batch Job Kueue has admitted (its suspend field cleared). Managed by the test, not by the
    Job controller: kwok completes a Job's pods at once, so the test creates a running one itself."""
    template = gpu_deployment(name, 1)["spec"]["template"]
    template["spec"]["restartPolicy"] = "Never"
    spec = {"parallelism": 1, "completions": 1, "suspend": False, "template": template}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {**spec, "managedBy": "rightsizer.io/e2e"},
    }


def kueue_workload(job: dict[str, Any]) -> dict[str, Any]:
    """The Workload Kueue makes for a job: owned by it as controller, labelled with its UID."""
    meta = job["metadata"]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    pod_set = {"name": "main", "count": 1, "template": job["spec"]["template"]}
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "Workload",
        "metadata": {
            "name": f"job-{meta['name']}-5f7c1",
            "labels": {"kueue.x-k8s.io/job-uid": meta["uid"]},
            "ownerReferences": [owner],
        },
        "spec": {"queueName": "gpu", "active": True, "podSets": [pod_set]},
    }


def test_an_idle_job_kueue_queues_is_suspended_through_its_workload_and_a_busy_one_is_left_alone(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization, every_kind_identity: str
) -> None:
    install_kueue_workload_crd(cluster)
    cluster.apply([kueue_job("idle", "gpu"), kueue_job("busy", "gpu")], namespace)
    batch = client.BatchV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    for name in ("idle", "busy"):
        job = batch.read_namespaced_job(name, namespace)
        cluster.apply(kueue_workload(cluster.api.sanitize_for_serialization(job)), namespace)
    cluster.apply(
        [gpu_pod(f"{name}-0", {"batch.kubernetes.io/job-name": name}) for name in ("idle", "busy")], namespace
    )
    gpu_util.set(namespace, 0, selector={"batch.kubernetes.io/job-name": "idle"})
    gpu_util.set(namespace, 90, selector={"batch.kubernetes.io/job-name": "busy"})
    cluster.apply(
        [
            training("idle", "batch/v1", "Job", idlePolicy=IDLE),
            training("busy", "batch/v1", "Job", idlePolicy=IDLE),
        ],
        namespace,
    )

    def active(job: str) -> bool:
        wl = custom.get_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta1", namespace, "workloads", f"job-{job}-5f7c1"
        )
        return bool(wl["spec"].get("active", True))

    def get_gw() -> str:
        return kubectl_get_gw(cluster, namespace)

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, identity=every_kind_identity, cluster_wide=True
    ) as operator:
        wait_for(
            lambda: not active("idle"),
            timeout=90,
            describe=lambda: f"{get_gw()}\n{operator.log()[-3000:]}",
        )

        def rows() -> dict[str, list[str]]:
            return {line.split()[0]: line.split() for line in get_gw().splitlines()[1:]}

        wait_for(lambda: rows()["busy"][2] == "Job", timeout=30, describe=get_gw)
        rows_seen = rows()
    # Kueue owns a queued job's count: suspend through the Workload is all the operator does with it.
    assert rows_seen["idle"][2:4] == ["Job", "Suspend"]
    assert rows_seen["busy"][2:4] == ["Job", "Suspend"]
    assert active("busy"), "a busy queued job keeps its Workload active"
    for name in ("idle", "busy"):
        job = batch.read_namespaced_job(name, namespace)
        assert job.spec.suspend is False, f"{name}: the job's own suspend field is Kueue's, never written"
        assert job.spec.parallelism == 1, f"{name}: the admitted count is Kueue's, never changed"


def test_an_idle_job_kueue_queues_is_only_recommended_on_without_rbac_for_kueue_workloads(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization, tmp_path_factory: pytest.TempPathFactory
) -> None:
    install_kueue_workload_crd(cluster)
    cluster.apply(kueue_job("idle", "gpu"), namespace)
    batch = client.BatchV1Api(cluster.api)
    job = cluster.api.sanitize_for_serialization(batch.read_namespaced_job("idle", namespace))
    cluster.apply(
        [kueue_workload(job), gpu_pod("idle-0", {"batch.kubernetes.io/job-name": "idle"})], namespace
    )
    gpu_util.set(namespace, 0, selector={"batch.kubernetes.io/job-name": "idle"})
    cluster.apply(training("idle", "batch/v1", "Job", idlePolicy=IDLE), namespace)
    custom = client.CustomObjectsApi(cluster.api)

    def get_gw() -> str:
        return kubectl_get_gw(cluster, namespace)

    def idle_row() -> list[str]:
        return next((line.split() for line in get_gw().splitlines() if line.startswith("idle ")), [])

    workdir = tmp_path_factory.mktemp("jobs-only-identity")
    with (
        chart_identity(cluster.kubeconfig, workdir, {"rbac": {"workloadKinds": ["Job"]}}) as identity,
        OperatorProcess.start(
            cluster.kubeconfig, namespace, cluster.prometheus_url, identity=identity, cluster_wide=True
        ) as operator,
    ):
        wait_for(lambda: idle_row()[2:4] == ["Job", "RecommendOnly"], timeout=60, describe=get_gw)

        # The operator has decided to suspend it (idle past idleFor), and could not: nothing written,
        # and its status says so rather than that it is suspending.
        def scaling() -> dict[str, Any]:
            return dict(conditions(custom, namespace, "idle").get("Scaling", {}))

        wait_for(
            lambda: (
                scaling().get("reason") == "RecommendOnly" and "would Suspend" in scaling().get("message", "")
            ),
            timeout=60,
            describe=lambda: f"{conditions(custom, namespace, 'idle')}\n{operator.log()[-2000:]}",
        )
        assert scaling()["status"] == "False" and "neither scaled nor suspended" in scaling()["message"]
    wl = custom.get_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta1", namespace, "workloads", "job-idle-5f7c1"
    )
    assert wl["spec"].get("active", True) is True, "without RBAC for Workloads, never deactivated"
    after = batch.read_namespaced_job("idle", namespace)
    assert (after.spec.suspend, after.spec.parallelism) == (False, 1), "and the job itself never written"
