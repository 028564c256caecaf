"""The metrics contract against the real thing: real scheduler and pods, the fake DCGM exporter, and
a real Prometheus scraping it. Each source must report the utilisation set for exactly those pods."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.metrics.base import GPU_UTIL, GR_ENGINE_ACTIVE, GpuMetricsSource, PodSamples
from rightsizer.adapters.metrics.dcgm import DcgmSource
from rightsizer.adapters.metrics.fake import FakeGpuMetricsSource
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from tests.support.metrics import workload_samples

pytestmark = pytest.mark.e2e

A100 = "NVIDIA-A100-SXM4-80GB"
UTIL = 73.0
A100_WATTS = 60 + (400 - 60) * UTIL / 100


def gpu_deployment(name: str, replicas: int, gpus: int = 1) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi", "nvidia.com/gpu": str(gpus)},
            "limits": {"nvidia.com/gpu": str(gpus)},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "nodeSelector": {"nvidia.com/gpu.product": A100}},
            },
        },
    }


@dataclass(frozen=True)
class Workloads:
    namespace: str
    busy: frozenset[str]
    quiet: frozenset[str]


@pytest.fixture
def workloads(cluster: Any, namespace: str, gpu_util: Any, wait_for: Callable[..., Any]) -> Workloads:
    """Two busy pods at 73% and one quiet pod, all Running on A100 nodes."""
    cluster.apply([gpu_deployment("busy", replicas=2), gpu_deployment("quiet", replicas=1)], namespace)
    core = client.CoreV1Api(cluster.api)

    def running(app: str, count: int) -> frozenset[str]:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        names = frozenset(p.metadata.name for p in pods if p.status.phase == "Running")
        return names if len(names) == count and len(pods) == count else frozenset()

    def describe() -> str:
        return str(cluster.kubectl("get", "pods", "-o", "wide", "-n", namespace, check=False).stdout)

    busy = wait_for(lambda: running("busy", 2), timeout=90, describe=describe)
    quiet = wait_for(lambda: running("quiet", 1), timeout=90, describe=describe)
    gpu_util.set(namespace, UTIL, selector={"app": "busy"})
    return Workloads(namespace, busy, quiet)


def gpu_nodes(cluster: Any) -> list[str]:
    nodes = client.CoreV1Api(cluster.api).list_node().items
    return sorted(
        n.metadata.name for n in nodes if int((n.status.capacity or {}).get("nvidia.com/gpu", "0")) > 0
    )


SOURCES = ["prometheus", "dcgm", "dcgm-per-node", "fake"]


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, cluster: Any, workloads: Workloads) -> Iterator[GpuMetricsSource]:
    kind = request.param
    if kind == "prometheus":
        prom = PrometheusSource.connect(cluster.prometheus_url, timeout_seconds=10, lookback_seconds=30)
        yield prom
    elif kind == "dcgm":
        yield DcgmSource([cluster.dcgm_url], cache_seconds=0)
    elif kind == "dcgm-per-node":
        # One URL per GPU node, as a DaemonSet behind a Service would give.
        base = cluster.dcgm_url.removesuffix("/metrics")
        yield DcgmSource(lambda: [f"{base}/nodes/{n}/metrics" for n in gpu_nodes(cluster)], cache_seconds=0)
    else:
        fake = FakeGpuMetricsSource()
        for signal in (GPU_UTIL, GR_ENGINE_ACTIVE):
            fake.set_util(workloads.namespace, workloads.busy, UTIL, signal=signal, power_watts=A100_WATTS)
            fake.set_util(workloads.namespace, workloads.quiet, 0.0, signal=signal, power_watts=60.0)
        yield fake


def settled(samples: PodSamples, workloads: Workloads) -> bool:
    """Every busy pod near 73%, the quiet one at 0."""
    return all(
        p in samples and math.isclose(samples[p].value, UTIL, abs_tol=0.5) for p in workloads.busy
    ) and all(p in samples and samples[p].value == 0 for p in workloads.quiet)


def test_source_reports_the_set_utilisation_for_exactly_those_pods(
    source: GpuMetricsSource, workloads: Workloads, wait_for: Callable[..., Any]
) -> None:
    asked = [*workloads.busy, *workloads.quiet, "no-such-pod"]
    samples: PodSamples = {}

    def read() -> bool:
        nonlocal samples
        samples = workload_samples(source, workloads.namespace, asked)
        return settled(samples, workloads)

    wait_for(read, timeout=60, describe=lambda: repr(samples))
    assert set(samples) == workloads.busy | workloads.quiet
    now = datetime.now(UTC)
    for pod in workloads.busy:
        sample = samples[pod]
        assert sample.gpus == 1
        assert sample.is_fresh(now, max_age_seconds=30), sample
        assert sample.power_watts == pytest.approx(A100_WATTS, abs=1)


def test_graphics_engine_activity_reads_as_percent(
    source: GpuMetricsSource, workloads: Workloads, wait_for: Callable[..., Any]
) -> None:
    def read() -> PodSamples:
        pods = sorted(workloads.busy | workloads.quiet)
        return workload_samples(source, workloads.namespace, pods, signal=GR_ENGINE_ACTIVE)

    wait_for(lambda: settled(read(), workloads), timeout=60, describe=lambda: repr(read()))


def test_fleet_samples_hold_the_namespace_pods(
    source: GpuMetricsSource, workloads: Workloads, wait_for: Callable[..., Any]
) -> None:
    def mine() -> PodSamples:
        fleet = source.fleet_samples()
        return {pod: s for (ns, pod), s in fleet.items() if ns == workloads.namespace}

    wait_for(lambda: settled(mine(), workloads), timeout=60, describe=lambda: repr(mine()))
    assert set(mine()) == workloads.busy | workloads.quiet


@pytest.fixture
def prometheus(cluster: Any) -> PrometheusSource:
    return PrometheusSource.connect(cluster.prometheus_url, timeout_seconds=10, lookback_seconds=30)


def test_prometheus_window_and_custom_query_agree(
    prometheus: PrometheusSource, workloads: Workloads, wait_for: Callable[..., Any]
) -> None:
    pods = sorted(workloads.busy)
    busy_only = Workloads(workloads.namespace, workloads.busy, frozenset())
    wait_for(lambda: settled(workload_samples(prometheus, workloads.namespace, pods), busy_only), timeout=60)
    windowed = workload_samples(prometheus, workloads.namespace, pods, window_seconds=10, over="max")
    assert all(windowed[p].value == pytest.approx(UTIL, abs=0.5) for p in pods)
    template = 'avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{namespace="{{namespace}}", pod=~"{{pods}}"})'
    custom = prometheus.custom_pod_samples(template, workloads.namespace, pods)
    assert set(custom) == workloads.busy
    assert all(s.value == pytest.approx(UTIL, abs=0.5) for s in custom.values())
    total = prometheus.scalar('sum(DCGM_FI_DEV_GPU_UTIL{namespace="{{namespace}}"})', workloads.namespace)
    assert total == pytest.approx(2 * UTIL, abs=1)
