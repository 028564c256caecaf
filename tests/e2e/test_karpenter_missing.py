"""A GPUNodePool whose provider is Karpenter, on a cluster where Karpenter is not installed or its
NodePool does not exist: the pool holds (no drain, no removal), says why and what to do, and acts
once Karpenter can take the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.fleet import Fleet, gpu_app, operator_args, running_pods
from tests.support.karpenter import CRD_NAMES, install_crds
from tests.support.operator_process import OperatorProcess, wait_passes

pytestmark = pytest.mark.e2e


@pytest.fixture
def identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("karpenter-identity")
    with chart_identity(cluster.kubeconfig, workdir, {"providers": {"karpenter": True}}) as kubeconfig:
        yield kubeconfig


def provider_condition(fleet: Fleet) -> dict[str, Any]:
    conditions = fleet.status("a100").get("conditions") or []
    return next((c for c in conditions if c["type"] == "ProviderReady"), {})


def test_a_karpenter_pool_holds_while_karpenter_or_its_nodepool_is_missing(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization, identity: str
) -> None:
    # Karpenter's API gone, as on a cluster that never had it (another module may have installed it).
    cluster.kubectl("delete", *(f"crd/{n}" for n in CRD_NAMES), "--ignore-not-found", "--timeout=120s")
    gpu_util.set(namespace, 50)
    nodes = fleet.add_nodes("a100", A100_80GB_X8, 2)
    cluster.apply(gpu_app(fleet, "web", "a100", 1, node=nodes[0]), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 1, timeout=60)
    pool = fleet.pool("a100")
    # Without the hold the empty node would go at once.
    fleet.node_pool("a100", A100_80GB_X8, 3.0, provider={"type": "karpenter", "nodePool": pool})
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        extra_args=operator_args(fleet),
        identity=identity,
        cluster_wide=True,
    ) as operator:
        wait_for(
            lambda: provider_condition(fleet).get("status") == "False", timeout=60, describe=operator.log
        )
        message = provider_condition(fleet)["message"]
        assert "Karpenter is not installed" in message and "install Karpenter" in message
        wait_passes(operator, pool, 3)
        assert len(fleet.nodes("a100")) == 2 and fleet.tainted() == []
        events = cluster.kubectl(
            "get",
            "events",
            "-A",
            "--field-selector",
            f"involvedObject.name={pool},reason=ProviderUnavailable",
        ).stdout
        assert "ProviderUnavailable" in events, "one Warning says why the pool holds"

        # Karpenter installed, the NodePool still missing: the remedy changes, the hold stays.
        install_crds(cluster)
        wait_for(
            lambda: (
                "NodePool" in provider_condition(fleet).get("message", "")
                and "not found" in provider_condition(fleet).get("message", "")
            ),
            timeout=60,
            describe=lambda: f"{provider_condition(fleet)}\n{operator.log()[-3000:]}",
        )
        assert "spec.provider.nodePool" in provider_condition(fleet)["message"]
        wait_passes(operator, pool, 3)
        assert len(fleet.nodes("a100")) == 2 and fleet.tainted() == []
