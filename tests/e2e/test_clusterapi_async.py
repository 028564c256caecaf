"""The Cluster API provider against controllers that take their time, as real ones do: machines are
ordered at once but their nodes register `PROVISION_DELAY` later, and a removed Machine's node goes
`REMOVAL_DELAY` after it was asked for (tests/support/clusterapi.py plays the controllers on Cluster
API's real CRDs). The real operator runs its pool loop; negative checks count its pool passes.

Provisioning takes 60 s and removal 30 s, as cloud machines commonly do (30 and 15
operator intervals at --consolidation-interval 2), and each test stays under ~90 s;
RIGHTSIZER_E2E_PROVISION_DELAY / RIGHTSIZER_E2E_REMOVAL_DELAY change them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.clusterapi import DELETE_MACHINE_ANNOTATION
from rightsizer.adapters.nodepools.kwok_nodes import L4_X4, POOL_LABEL
from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.clusterapi import MachineController, install_crds
from tests.support.operator_process import OperatorProcess, pool_passes, prometheus_sees, wait_passes

pytestmark = pytest.mark.e2e

PROVISION_DELAY = float(os.environ.get("RIGHTSIZER_E2E_PROVISION_DELAY", "60"))
REMOVAL_DELAY = float(os.environ.get("RIGHTSIZER_E2E_REMOVAL_DELAY", "30"))
INTERVAL = 2
# No cooldown: the machines still starting, not a timer, must be what holds further orders back.
OPERATOR_ARGS = (
    "--consolidation-interval", str(INTERVAL), "--drain-timeout", "60", "--intent-lease", "10",
    "--scale-up-cooldown", "0",
)  # fmt: skip


@pytest.fixture(scope="module")
def clusterapi_identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chart with its Cluster API provider on: the operator runs with exactly its RBAC."""
    install_crds(cluster)
    workdir = tmp_path_factory.mktemp("clusterapi-identity")
    with chart_identity(cluster.kubeconfig, workdir, {"providers": {"clusterapi": True}}) as kubeconfig:
        yield kubeconfig


@pytest.fixture
def controller(
    cluster: Cluster, namespace: str, request: pytest.FixtureRequest
) -> Iterator[MachineController]:
    """The MachineDeployment's controllers, with (provision, removal) delays; its pool goes after."""
    pool = f"capi-{secrets.token_hex(3)}"
    provision, removal = request.param
    yield MachineController(cluster, namespace, pool, pool, provision_delay=provision, removal_delay=removal)
    cluster.kubectl("delete", "gpunodepool", pool, "--ignore-not-found", "--wait=false", check=False)


def gpu_node_pool(cluster: Cluster, namespace: str, pool: str) -> None:
    cluster.apply(
        {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "GPUNodePool",
            "metadata": {"name": pool, "labels": {"rightsizer.io/e2e-owner": namespace}},
            "spec": {
                "nodeSelector": {POOL_LABEL: pool},
                "provider": {
                    "type": "clusterapi",
                    "machineDeployment": {"namespace": namespace, "name": pool},
                },
                "gpuModel": L4_X4.gpu_product,
                "gpusPerNode": L4_X4.gpus,
                "pricePerNodeHour": 4.6,
                "consolidationPolicy": "WhenUnderutilized",
                "consolidateAfter": "0s",
                "scaleDownAfter": "0s",
                "startupGracePeriod": "0s",
            },
        }
    )


def gpu_app(pool: str, name: str, gpus: int, replicas: int) -> dict[str, Any]:
    """A Deployment of GPU pods only the pool's nodes can host."""
    container = {
        "name": "main",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {
            "requests": {"cpu": "1", "nvidia.com/gpu": str(gpus)},
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
                "spec": {
                    "nodeSelector": {POOL_LABEL: pool},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [container],
                },
            },
        },
    }


def running(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Running pod → node."""
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items
    return {p.metadata.name: p.spec.node_name for p in pods if p.status.phase == "Running"}


def warnings_about(cluster: Cluster, names: set[str]) -> list[str]:
    events = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(field_selector="type=Warning").items
    return [f"{e.involved_object.name}: {e.reason} x{e.count or 1}: {e.message}" for e in events
            if e.involved_object.name in names]  # fmt: skip


def operator_for(cluster: Cluster, namespace: str, identity: str) -> Any:
    return OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=OPERATOR_ARGS, identity=identity,
        cluster_wide=True,
    )  # fmt: skip


@pytest.mark.parametrize("controller", [(PROVISION_DELAY, 0.0)], indirect=True)
def test_machines_still_provisioning_are_never_ordered_again(
    cluster: Cluster, namespace: str, clusterapi_identity: str, controller: MachineController
) -> None:
    pool = controller.pool
    controller.create(0)
    gpu_node_pool(cluster, namespace, pool)
    cluster.apply(gpu_app(pool, "train", 4, 2), namespace)  # two whole nodes' worth, Pending
    with controller.running(), operator_for(cluster, namespace, clusterapi_identity) as operator:

        def seen() -> str:
            return f"replicas seen {controller.replicas_seen}\n{operator.log()[-3000:]}"

        wait_for(lambda: controller.replicas() == 2, timeout=30, describe=seen)
        # While both machines are starting, the same Pending pods order nothing more.
        wait_passes(operator, pool, 5)
        assert controller.nodes() == [], "the nodes registered early: the check proved nothing"
        assert controller.replicas_seen == [0, 2], seen()
        # More demand while they start: exactly one more machine for it.
        client.AppsV1Api(cluster.api).patch_namespaced_deployment_scale(
            "train", namespace, {"spec": {"replicas": 3}}
        )
        wait_for(lambda: controller.replicas() == 3, timeout=30, describe=seen)
        wait_passes(operator, pool, 3)
        assert controller.replicas_seen == [0, 2, 3], seen()
        # The nodes register; the pods run on them, and the pool orders nothing more.
        wait_for(lambda: len(running(cluster, namespace)) == 3, timeout=PROVISION_DELAY + 60, describe=seen)
        wait_passes(operator, pool, 3)
        assert controller.replicas_seen == [0, 2, 3], seen()
        assert controller.machines_created == 3
        assert sorted(set(running(cluster, namespace).values())) == sorted(controller.nodes())


@pytest.mark.parametrize("controller", [(0.0, REMOVAL_DELAY)], indirect=True)
def test_a_removal_the_controller_finishes_later_completes_without_warnings(
    cluster: Cluster,
    namespace: str,
    clusterapi_identity: str,
    controller: MachineController,
    gpu_util: GpuUtilization,
) -> None:
    pool = controller.pool
    gpu_util.set(namespace, 50)  # the pod's activity is known: the pool holds for nothing else
    controller.create(2)
    with controller.running():
        wait_for(lambda: len(controller.nodes()) == 2, timeout=30)
        cluster.apply(gpu_app(pool, "serve", 1, 1), namespace)
        wait_for(lambda: len(running(cluster, namespace)) == 1, timeout=60)
        (busy,) = running(cluster, namespace).values()
        (empty,) = set(controller.nodes()) - {busy}
        wait_for(lambda: prometheus_sees(cluster.prometheus_url, namespace, "serve", 1), timeout=60)
        gpu_node_pool(cluster, namespace, pool)
        with operator_for(cluster, namespace, clusterapi_identity) as operator:

            def seen() -> str:
                return f"replicas seen {controller.replicas_seen}\n{operator.log()[-3000:]}"

            wait_for(lambda: controller.replicas() == 1, timeout=60, describe=seen)
            marked = [
                m
                for m in controller.machines()
                if DELETE_MACHINE_ANNOTATION in m["metadata"].get("annotations", {})
            ]
            assert [controller.node_of(m) for m in marked] == [empty]
            # The Machine is going but its node is still there: passes meanwhile ask nothing more.
            passes = pool_passes(operator, pool)
            wait_passes(operator, pool, 5)
            assert empty in {n.metadata.name for n in client.CoreV1Api(cluster.api).list_node().items}, (
                "the node went early: the check proved nothing"
            )
            assert controller.replicas_seen == [2, 1], seen()
            wait_for(lambda: controller.nodes() == [busy], timeout=REMOVAL_DELAY + 30, describe=seen)
            wait_passes(operator, pool, 3)
            assert controller.replicas_seen == [2, 1], seen()
            assert warnings_about(cluster, {empty, busy, pool}) == []
            assert pool_passes(operator, pool) > passes
            assert list(running(cluster, namespace).values()) == [busy]
