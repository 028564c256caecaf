"""The ground every feature stands on: real scheduler, fake GPU nodes, fake DCGM exporter, real Prometheus."""

from __future__ import annotations

import math
from typing import Any

import pytest
from kubernetes import client
from prometheus_api_client import PrometheusConnect

from tests.support.cluster import Cluster, GpuUtilization, wait_for

pytestmark = pytest.mark.e2e

A100 = "NVIDIA-A100-SXM4-80GB"


def gpu_deployment(name: str, gpus: int, replicas: int = 1, product: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {
                    "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": str(gpus)},
                    "limits": {"nvidia.com/gpu": str(gpus)},
                },
            }
        ]
    }
    if product:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def pods_of(cluster: Cluster, namespace: str, app: str) -> list[client.V1Pod]:
    return list(
        client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    )


def describe_pods(cluster: Cluster, namespace: str) -> str:
    return cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout


def test_gpu_pod_lands_on_a100_node_and_runs(cluster: Cluster, namespace: str) -> None:
    cluster.apply(gpu_deployment("infer", gpus=2, product=A100), namespace)

    def running() -> list[client.V1Pod]:
        pods = pods_of(cluster, namespace, "infer")
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = wait_for(running, timeout=90, describe=lambda: describe_pods(cluster, namespace))
    node = client.CoreV1Api(cluster.api).read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == A100
    assert node.status.allocatable["nvidia.com/gpu"] == "8"


def test_pod_wanting_more_gpus_than_any_node_stays_pending_with_scheduler_reason(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(gpu_deployment("too-big", gpus=16), namespace)

    def unschedulable() -> client.V1PodCondition | None:
        for pod in pods_of(cluster, namespace, "too-big"):
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False":
                    return cond
        return None

    cond = wait_for(unschedulable, timeout=90, describe=lambda: describe_pods(cluster, namespace))
    assert cond.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond.message
    (pod,) = pods_of(cluster, namespace, "too-big")
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_set_utilisation_is_visible_in_prometheus_for_exactly_those_pods(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization
) -> None:
    cluster.apply(gpu_deployment("busy", gpus=1, replicas=2), namespace)
    cluster.apply(gpu_deployment("quiet", gpus=1, replicas=1), namespace)
    wait_for(
        lambda: len([p for p in pods_of(cluster, namespace, "busy") if p.status.phase == "Running"]) == 2,
        timeout=90,
        describe=lambda: describe_pods(cluster, namespace),
    )
    busy = {p.metadata.name for p in pods_of(cluster, namespace, "busy")}
    gpu_util.set(namespace, 73, selector={"app": "busy"})

    prom = PrometheusConnect(url=cluster.prometheus_url, disable_ssl=True)
    query = f'DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}"}}'

    def busy_series() -> list[dict[str, Any]]:
        result = prom.custom_query(query)
        hot = [r for r in result if math.isclose(float(r["value"][1]), 73, abs_tol=0.5)]
        return hot if {r["metric"]["pod"] for r in hot} == busy else []

    series = wait_for(busy_series, timeout=60, describe=lambda: repr(prom.custom_query(query)))
    for s in series:
        assert s["metric"]["namespace"] == namespace
        assert s["metric"]["modelName"]
        assert s["metric"]["Hostname"]
    # The pod without a rule reports 0 and keeps its own labels.
    quiet = [r for r in prom.custom_query(query) if r["metric"]["pod"].startswith("quiet-")]
    assert quiet and all(float(r["value"][1]) == 0 for r in quiet)


def test_crd_applied_with_kubectl_is_served(cluster: Cluster, namespace: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "probes.smoke.rightsizer.io"},
        "spec": {
            "group": "smoke.rightsizer.io",
            "scope": "Namespaced",
            "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"gpus": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.apply(crd)
    wait_for(
        lambda: "probes" in cluster.kubectl("api-resources", "--api-group=smoke.rightsizer.io").stdout,
        timeout=60,
    )
    cluster.apply(
        {
            "apiVersion": "smoke.rightsizer.io/v1",
            "kind": "Probe",
            "metadata": {"name": "p"},
            "spec": {"gpus": 2},
        },
        namespace,
    )
    out = cluster.kubectl(
        "get", "probes.smoke.rightsizer.io", "p", "-n", namespace, "-o", "jsonpath={.spec.gpus}"
    )
    assert out.stdout == "2"
