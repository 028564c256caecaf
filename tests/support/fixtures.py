"""pytest fixtures for tests that run against a real cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import Cluster, GpuUtilization, new_namespace_name
from tests.support.cluster import wait_for as _wait_for
from tests.support.fleet import fleet
from tests.support.karpenter import Karpenter
from tests.support.operator_process import ROOT, OperatorProcess
from tests.support.world import World

__all__ = [
    "cluster",
    "fleet",
    "gpu_util",
    "karpenter",
    "karpenter_process",
    "kubectl",
    "namespace",
    "operator",
    "wait_for",
    "world",
]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster.connect()


@pytest.fixture
def kubectl(cluster: Cluster) -> Callable[..., Any]:
    return cluster.kubectl


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    return _wait_for


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = new_namespace_name(request.node.name)
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's default ServiceAccount exists.
    _wait_for(lambda: core.read_namespaced_service_account("default", name), timeout=60)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def gpu_util(cluster: Cluster) -> GpuUtilization:
    return GpuUtilization(cluster)


@pytest.fixture
def world(cluster: Cluster, namespace: str) -> World:
    cluster.kubectl("apply", "-f", "crds/")
    return World(cluster, namespace)


@pytest.fixture(scope="module")
def karpenter_process(cluster: Cluster) -> Iterator[Karpenter]:
    """The real Karpenter (kwok provider), for the tests of one module."""
    with Karpenter.start(cluster) as running:
        yield running


@pytest.fixture
def karpenter(karpenter_process: Karpenter) -> Iterator[Karpenter]:
    """Karpenter for one test: the NodePools it makes, and their nodes, are gone after it."""
    karpenter_process.cluster.kubectl("apply", "-f", str(ROOT / "crds"))  # the GPUNodePools over them
    with karpenter_process.for_test() as running:
        yield running


WORKLOAD_INTERVAL = 3
"""Seconds between a test operator's workload passes: a few passes fit in any wait."""


@pytest.fixture
def operator(cluster: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    """The real operator with the chart's identity, workload passes every few seconds (a module may
    define its own ``operator`` with other flags)."""
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, interval=WORKLOAD_INTERVAL
    ) as proc:
        yield proc
