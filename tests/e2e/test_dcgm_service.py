"""The operator finds dcgm-exporters through their Service's EndpointSlices (`dcgm.service`) and
decides on what it scrapes from them, running as the ServiceAccount of the chart installed with
`dcgm.service` set: the chart's Role in the exporters' namespace is all it needs.

The API server refuses loopback addresses in EndpointSlices and the fake exporter listens on
127.0.0.1, so the exporter is given an address of its own: a test host in a network namespace of the
test's, whose port 9400 is relayed to the fake exporter (tests/support/netns_host.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from kubernetes import client

from tests.support.chart import installed_chart_identity
from tests.support.cluster import Cluster, GpuUtilization, new_namespace_name, wait_for
from tests.support.netns_host import NetnsHost, relayed_host
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

UTIL = 90
EXPORTER_PORT = 9400
SERVICE = "dcgm-exporter"


@pytest.fixture
def exporter_namespace(cluster: Cluster) -> Iterator[str]:
    """Where the exporters' Service lives, as the GPU operator's namespace does: not the workloads'."""
    name = new_namespace_name("dcgm-exporter")
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def exporter_host(cluster: Cluster) -> Iterator[NetnsHost]:
    """The fake exporter at an address the API server accepts in an EndpointSlice."""
    exporter = urlparse(cluster.dcgm_url)
    assert exporter.hostname and exporter.port, (
        f"RIGHTSIZER_DCGM_URL without host or port: {cluster.dcgm_url}"
    )
    with relayed_host(exporter.hostname, exporter.port, EXPORTER_PORT) as host:
        yield host


def exporter_service(address: str) -> list[dict[str, Any]]:
    """A Service without a selector and its EndpointSlice, as the exporter DaemonSet's would be."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "labels": {"app": SERVICE}},
            "spec": {"ports": [{"name": "metrics", "port": EXPORTER_PORT, "targetPort": EXPORTER_PORT}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-test-host",
                "labels": {
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "e2e.rightsizer.io",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": EXPORTER_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        },
    ]


def operator_discovering(
    cluster: Cluster, namespace: str, service: str, identity: str | None = None, refused: str | None = None
) -> Any:
    """The operator reading the exporters behind `service`, as the chart's `metricsSource: DCGM` and
    `dcgm.service` values set it up; as `identity` (a chart's cluster-wide ServiceAccount; by default
    the session's, installed without dcgm.service), `refused` naming the refusals the test expects."""
    return OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, interval=3, identity=identity,
        cluster_wide=True, refusals_expected=refused,
        extra_args=("--metrics-source", "DCGM", "--dcgm-service", service),
    )  # fmt: skip


def decided(world: World) -> dict[str, Any] | None:
    status = world.workload("chat").get("status") or {}
    metrics = world.condition("chat", "MetricsAvailable") or {}
    if metrics.get("status") != "True" or (status.get("replicas") or {}).get("desired") != 3:
        return None
    return status


def test_the_operator_scrapes_the_exporters_behind_the_dcgm_service_with_the_charts_rbac(  # noqa: PLR0917 - fixtures
    cluster: Cluster,
    world: World,
    gpu_util: GpuUtilization,
    exporter_namespace: str,
    exporter_host: NetnsHost,
    tmp_path: Path,
) -> None:
    ns = world.namespace
    service = f"{exporter_namespace}/{SERVICE}"
    cluster.apply(exporter_service(exporter_host.address), exporter_namespace)
    page = requests.get(f"http://{exporter_host.netloc}/metrics", timeout=10)
    assert page.ok and "DCGM_FI_DEV_GPU_UTIL" in page.text, (
        f"the test host does not relay the exporter: {page}"
    )
    world.run_gpu_app(gpu_util, "chat", 2, UTIL)
    relayed_before = exporter_host.connections()

    values = {"dcgm": {"service": service}}
    with (
        installed_chart_identity(cluster.kubeconfig, tmp_path, values) as chart,
        operator_discovering(cluster, ns, service, identity=chart.kubeconfig) as operator,
    ):
        # Recommend: 2 replicas at 90% against a 60% target want 3, on the exporter's numbers only.
        cluster.apply(
            gpu_workload("chat", "chat", mode="Recommend", metric={"source": "DCGM", "window": "10s"}), ns
        )
        status: dict[str, Any] = {}

        def read() -> bool:
            status.update(decided(world) or {})
            return bool(status)

        wait_for(
            read,
            timeout=90,
            describe=lambda: f"{world.describe('chat')}\n{exporter_host.log()}\n{operator.log()[-3000:]}",
        )
        assert status["utilization"]["aggregate"] == pytest.approx(UTIL, abs=1)
        assert world.replicas("chat") == 2  # Recommend: told, not done
        assert exporter_host.connections() > relayed_before, "the operator did not scrape the test host"


def test_exporters_that_cannot_be_listed_mean_hold_and_say_what_to_grant(
    cluster: Cluster,
    world: World,
    gpu_util: GpuUtilization,
    exporter_namespace: str,
    exporter_host: NetnsHost,
) -> None:
    ns = world.namespace
    service = f"{exporter_namespace}/{SERVICE}"
    cluster.apply(exporter_service(exporter_host.address), exporter_namespace)
    world.run_gpu_app(gpu_util, "chat", 2, UTIL)
    # The session's chart was installed without dcgm.service: it grants no EndpointSlice list.
    with operator_discovering(cluster, ns, service, refused="endpointslices"):
        cluster.apply(gpu_workload("chat", "chat", metric={"source": "DCGM", "window": "10s"}), ns)

        def holding() -> bool:
            metrics = world.condition("chat", "MetricsAvailable") or {}
            return metrics.get("status") == "False" and "list endpointslices" in metrics.get("message", "")

        wait_for(holding, timeout=60, describe=lambda: world.describe("chat"))
        assert world.replicas("chat") == 2  # Enforce, yet nothing changed on what could not be read
