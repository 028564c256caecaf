"""A test's view of its namespace: GPU Deployments, GPUWorkloads, events, through the API server."""

from __future__ import annotations

import json
from typing import Any

import requests
from kubernetes import client

from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import prometheus_sees


def gpu_deployment(
    name: str, replicas: int, gpus: int = 1, labels: dict[str, str] | None = None, cpu: str = "1"
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {
                                "requests": {"cpu": cpu, "memory": "1Gi", "nvidia.com/gpu": str(gpus)},
                                "limits": {"nvidia.com/gpu": str(gpus)},
                            },
                        }
                    ],
                },
            },
        },
    }


def gpu_workload(name: str, target: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "workloadType": "Inference",
        "mode": "Enforce",
        "targetUtilization": 60,
        "minReplicas": 1,
        "maxReplicas": 10,
        "metric": {"window": "10s"},
    }
    body.update(spec)
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name},
        "spec": body,
    }


class World:
    """What a test sets up and observes, through the API server."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.apps = client.AppsV1Api(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas)

    def ready_replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.namespace).status.ready_replicas or 0)

    def workload(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "rightsizer.io", "v1alpha1", self.namespace, "gpuworkloads", name
        )
        return obj

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for cond in (self.workload(name).get("status") or {}).get("conditions") or []:
            if cond["type"] == kind:
                return dict(cond)
        return None

    def last_reason(self, name: str) -> str:
        """Why the workload's last decision was what it was ("" before the first)."""
        decision = (self.workload(name).get("status") or {}).get("lastDecision") or {}
        return str(decision.get("reason", ""))

    def events(self, reason: str | None = None) -> list[str]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [e.message for e in items if reason is None or e.reason == reason]

    def describe(self, workload: str | None = None) -> str:
        out = self.cluster.kubectl(
            "get", "deploy,pods,gw", "-n", self.namespace, "-o", "wide", check=False
        ).stdout
        if workload:
            out += "\n" + json.dumps(self.workload(workload).get("status"), indent=1)
        return out

    def wait_ready(self, name: str, count: int, timeout: float = 90) -> None:
        wait_for(lambda: self.ready_replicas(name) == count, timeout=timeout, describe=self.describe)

    def run_gpu_app(self, gpu_util: GpuUtilization, name: str, replicas: int, util: float) -> None:
        """A Deployment whose pods run at `util` percent, Ready and visible in Prometheus."""
        self.cluster.apply(gpu_deployment(name, replicas), self.namespace)
        gpu_util.set(self.namespace, util, selector={"app": name})
        self.wait_ready(name, replicas)
        wait_for(
            lambda: prometheus_sees(self.cluster.prometheus_url, self.namespace, name, replicas), timeout=60
        )
        # And at that value for a whole metric window: on a loaded machine the first samples can lag
        # the scenario, and a pass deciding on them would not make the decision the test expects.
        wait_for(lambda: self._steady(name, replicas, util), timeout=60)

    def _steady(self, name: str, replicas: int, util: float) -> bool:
        series = f'DCGM_FI_DEV_GPU_UTIL{{namespace="{self.namespace}", pod=~"{name}-.*"}}'
        query = (
            f"count((abs(min_over_time({series}[10s]) - {util}) < 1)"
            f" and (abs(max_over_time({series}[10s]) - {util}) < 1))"
        )
        rsp = requests.get(f"{self.cluster.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
        result = rsp.json()["data"]["result"]
        return bool(result) and int(float(result[0]["value"][1])) >= replicas
