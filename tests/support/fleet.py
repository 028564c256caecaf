"""Test-owned fake GPU nodes and GPUNodePools for consolidation tests, and what they observe.

Each test brings its own fake nodes (labelled and tainted for the test only, so no other pod lands on
them) and its own GPUNodePools selecting them: the operator only ever touches nodes of pools that
have a GPUNodePool, so the shared fleet is left alone. Everything the test adds is deleted afterwards
(the `fleet` fixture).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.kwok_nodes import NodeShape, fake_node_manifest
from tests.support.cluster import Cluster, wait_for
from tests.support.operator_process import ROOT

TAINT_KEY = "rightsizer.io/test"
OWNER_LABEL = "rightsizer.io/test-owner"
DISRUPTED = "rightsizer.io/disrupted"
# A short intent lease: a restarted operator takes over the dead one's drain after seconds, not minutes.
OPERATOR_ARGS = ("--consolidation-interval", "2", "--drain-timeout", "90", "--intent-lease", "10")


def operator_args(fleet: Fleet) -> tuple[str, ...]:
    """Consolidation scoped to this test's GPUNodePools, whatever else runs on the cluster."""
    return (*OPERATOR_ARGS, "--pool-selector", f"{OWNER_LABEL}={fleet.id}")


class Fleet:
    """Test-owned fake nodes and GPUNodePools; `pool(shape)` names the pool label value."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.id = f"cz{secrets.token_hex(3)}"
        self.core = client.CoreV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)

    def pool(self, kind: str) -> str:
        return f"{self.id}-{kind}"

    def add_node(self, name: str, shape: NodeShape, pool: str) -> None:
        node = fake_node_manifest(name, shape, pool, "us-east-1a")
        node["metadata"]["labels"][OWNER_LABEL] = self.id
        node["spec"]["taints"] = [{"key": TAINT_KEY, "value": self.id, "effect": "NoSchedule"}]
        self.core.create_node(node)

    def add_nodes(self, kind: str, shape: NodeShape, count: int) -> list[str]:
        names = [f"{self.pool(kind)}-{i}" for i in range(count)]
        for name in names:
            self.add_node(name, shape, self.pool(kind))
        wait_for(lambda: all(self.ready(n) for n in names), timeout=60, describe=lambda: str(names))
        return names

    def ready(self, name: str) -> bool:
        node = self.core.read_node(name)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def node_pool(
        self, kind: str, shape: NodeShape, price: float, min_nodes: int = 0, **spec: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "nodeSelector": {"rightsizer.io/pool": self.pool(kind)},
            "provider": {
                "type": "kwok",
                "nodeTemplate": {
                    "labels": {OWNER_LABEL: self.id},
                    "taints": [{"key": TAINT_KEY, "value": self.id, "effect": "NoSchedule"}],
                },
            },
            "gpuModel": shape.gpu_product,
            "gpusPerNode": shape.gpus,
            "pricePerGpuHour": price,
            "minNodes": min_nodes,
            "consolidationPolicy": "WhenUnderutilized",
            "consolidateAfter": "0s",
            "scaleDownAfter": "0s",
            "startupGracePeriod": "0s",  # the tests' pods are seconds old; the shield has its own test
            "disruption": {"budgets": [{"nodes": "1"}]},
            **spec,
        }
        doc = {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "GPUNodePool",
            "metadata": {"name": self.pool(kind), "labels": {OWNER_LABEL: self.id}},
            "spec": body,
        }
        self.cluster.apply(doc)
        return doc

    def nodes(self, kind: str) -> list[client.V1Node]:
        return list(self.core.list_node(label_selector=f"rightsizer.io/pool={self.pool(kind)}").items)

    def most_tainted_in_a_pool(self) -> int:
        """The most nodes of any one of the test's pools that carry the disruption taint right now."""
        nodes = self.core.list_node(label_selector=f"{OWNER_LABEL}={self.id}").items
        per_pool: dict[str, int] = {}
        for n in nodes:
            if any(t.key == DISRUPTED for t in n.spec.taints or []):
                pool = (n.metadata.labels or {}).get("rightsizer.io/pool", "")
                per_pool[pool] = per_pool.get(pool, 0) + 1
        return max(per_pool.values(), default=0)

    def tainted(self) -> list[str]:
        nodes = self.core.list_node(label_selector=f"{OWNER_LABEL}={self.id}").items
        return [n.metadata.name for n in nodes if any(t.key == DISRUPTED for t in n.spec.taints or [])]

    def status(self, kind: str) -> dict[str, Any]:
        pool = self.custom.get_cluster_custom_object(
            "rightsizer.io", "v1alpha1", "gpunodepools", self.pool(kind)
        )
        return dict(pool.get("status") or {})

    def cleanup(self) -> None:
        # The operator that put kopf's finalizer on the pools has stopped by now: release them.
        pools = self.custom.list_cluster_custom_object(
            "rightsizer.io", "v1alpha1", "gpunodepools", label_selector=f"{OWNER_LABEL}={self.id}"
        )
        for pool in pools.get("items") or []:
            name = pool["metadata"]["name"]
            self.custom.patch_cluster_custom_object(
                "rightsizer.io", "v1alpha1", "gpunodepools", name, {"metadata": {"finalizers": None}}
            )
            self.custom.delete_cluster_custom_object("rightsizer.io", "v1alpha1", "gpunodepools", name)
        self.cluster.kubectl("delete", "nodes", "-l", f"{OWNER_LABEL}={self.id}", "--wait=false", check=False)
        # The shared fleet must look as it did before, whatever happened here.
        fleet = subprocess.run(
            [sys.executable, "-m", "rightsizer.devcluster.fleet"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        self.cluster.kubectl("apply", "-f", "-", input=fleet, check=False)


@pytest.fixture
def fleet(cluster: Cluster) -> Iterator[Fleet]:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))  # idempotent; other modules apply the same
    owned = Fleet(cluster)
    try:
        yield owned
    finally:
        owned.cleanup()


def gpu_app(
    fleet: Fleet,
    name: str,
    kind: str,
    gpus: int,
    *,
    annotations: dict[str, str] | None = None,
    node: str | None = None,
    min_ready_seconds: int = 0,
) -> dict[str, Any]:
    selector = {"rightsizer.io/pool": fleet.pool(kind)}
    if node:
        selector["kubernetes.io/hostname"] = node
    spread = {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"spread": kind}},
            "topologyKey": "kubernetes.io/hostname",
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "spread": kind}, "annotations": annotations or {}},
                "spec": {
                    "nodeSelector": selector,
                    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [spread]}
                    },
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": str(gpus)},
                                "limits": {"nvidia.com/gpu": str(gpus)},
                            },
                        }
                    ],
                },
            },
        },
    }


def running_pods(cluster: Cluster, namespace: str) -> dict[str, tuple[str, str]]:
    """pod name -> (uid, node) of Running pods."""
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    return {
        p.metadata.name: (p.metadata.uid, p.spec.node_name)
        for p in pods
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


def all_available(cluster: Cluster, namespace: str) -> bool:
    deployments = client.AppsV1Api(cluster.api).list_namespaced_deployment(namespace).items
    return all((d.status.available_replicas or 0) == d.spec.replicas for d in deployments)


def deployments_summary(cluster: Cluster, namespace: str) -> str:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    return "\n".join(f"{p.metadata.name} {p.status.phase} on {p.spec.node_name}" for p in pods)


@contextmanager
def watch_taints(fleet: Fleet) -> Iterator[list[int]]:
    """Samples the most nodes of one of the test's pools that carry the disruption taint at once (budgets
    are per pool; pools drain side by side), until the block ends."""
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with suppress(ApiException):
                seen.append(fleet.most_tainted_in_a_pool())
            stop.wait(0.3)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
