"""The workload loop's cluster view knows its age: while a watch is broken and cannot list again, the
GPUWorkloads hold (Ready=False, CacheStale) instead of deciding on what may be minutes old, and they
act again once the view has listed afresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apiproxy import ApiProxy, operator_proxy
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiProxy]:
    with operator_proxy(cluster, tmp_path) as running:
        yield running


def ready(world: World, name: str) -> dict[str, Any]:
    conditions = (world.workload(name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def test_a_broken_pod_watch_holds_every_workload_until_the_pods_are_listed_again(
    cluster: Cluster, namespace: str, world: World, gpu_util: GpuUtilization, proxy: ApiProxy
) -> None:
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=2), namespace)
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        interval=2,
        identity=proxy.kubeconfig,
        cluster_wide=True,
    ) as op:
        wait_for(lambda: ready(world, "chat").get("status") == "True", timeout=60, describe=op.log)
        # The pods can no longer be listed, and the open pod watch is cut: the view goes stale.
        refused = proxy.fail("GET", r"^/api/v1/pods$", 503, times=None)
        proxy.drop_connections()
        wait_for(
            lambda: ready(world, "chat").get("reason") == "CacheStale",
            timeout=60,
            describe=lambda: f"{world.describe('chat')}\n{op.log()[-3000:]}",
        )
        assert "watch of /api/v1/pods broken" in ready(world, "chat")["message"]
        # The scale-up it would make (util 90% > 60%) waits: maxReplicas raised while stale.
        world.custom.patch_namespaced_custom_object(
            "rightsizer.io", "v1alpha1", namespace, "gpuworkloads", "chat", {"spec": {"maxReplicas": 3}}
        )
        seen = refused.seen
        wait_for(lambda: refused.seen >= seen + 3, timeout=60)  # the cache tried to list again, thrice
        assert world.replicas("chat") == 2, "scaled on a stale view"
        refused.release()
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("chat"))
        wait_for(lambda: ready(world, "chat").get("status") == "True", timeout=30)
