"""Two replicas of the operator at once: kopf peering lets exactly one act."""

from __future__ import annotations

import json

import pytest

from tests.support.chart import SESSION_IDENTITY
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess, reconciles
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e


def test_two_replicas_never_both_act(cluster: Cluster, namespace: str, gpu_util: GpuUtilization) -> None:
    cluster.kubectl("apply", "-f", "crds/")
    world = World(cluster, namespace)
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    # The chart lets its ServiceAccount use its own peering object only.
    name = SESSION_IDENTITY.get(cluster.kubeconfig).peering_name
    peering = ["--peering-name", name]
    with (
        OperatorProcess.start(
            cluster.kubeconfig, namespace, cluster.prometheus_url, standalone=False, extra_args=peering
        ) as first,
        OperatorProcess.start(
            cluster.kubeconfig, namespace, cluster.prometheus_url, standalone=False, extra_args=peering
        ) as second,
    ):
        world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=3), namespace)
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("chat"))
        # Passes in which a second leader would have acted too.
        start = reconciles(first) + reconciles(second)
        wait_for(lambda: reconciles(first) + reconciles(second) >= start + 3, timeout=60)
        acting = [p for p in (first, second) if reconciles(p) > 0]
        assert len(acting) == 1, f"both replicas acted:\n{first.log()[-1500:]}\n{second.log()[-1500:]}"
        # The one that did not act announced itself and is held back by the peering, not dead.
        waiting = second if acting[0] is first else first
        assert waiting.proc.poll() is None
        peers = cluster.kubectl("get", "clusterkopfpeering", name, "-o", "jsonpath={.status}").stdout
        assert len(json.loads(peers)) == 2, peers
        world.cluster.kubectl("delete", "gpuworkloads", "--all", "-n", namespace, "--timeout=60s")
    cluster.kubectl("delete", "clusterkopfpeering", name, "--ignore-not-found")
