"""GPU workloads that are not Deployments, through the real operator with the chart's RBAC for their
kinds: an idle RayCluster (real CRD) is suspended through spec.suspend, and `kubectl get gw` says what
the operator can do with each target. No KubeRay or JobSet controller runs: the test creates the pods
they would, with their labels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.workload_kinds import install_crds, jobset, ray_cluster
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
        return str(cluster.kubectl("get", "gw", "-n", namespace).stdout)

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
