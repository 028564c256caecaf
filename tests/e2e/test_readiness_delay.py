"""spec.initialReadinessDelaySeconds on the real operator: a pod Ready for less than the delay is still
starting (a model loading reads 0%, a burst of new replicas is not multiplied again)."""

from __future__ import annotations

import pytest

from tests.support.cluster import GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e


def test_pods_inside_the_readiness_delay_are_starting_and_scale_nothing(
    world: World, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 100)  # 100% against 60%: would scale up at once
    warming = gpu_workload("chat", "chat", maxReplicas=4, initialReadinessDelaySeconds=3600)
    world.cluster.apply(warming, ns)
    wait_for(
        lambda: "no Ready pods to measure (2 starting)" in world.last_reason("chat"),
        timeout=60,
        describe=lambda: world.describe("chat"),
    )
    assert world.replicas("chat") == 2
    assert world.workload("chat")["status"]["lastDecision"]["action"] == "Hold"

    # Past the delay (here: the delay lowered below the pods' age) they are measured and count.
    world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=4, initialReadinessDelaySeconds=0), ns)
    wait_for(lambda: world.replicas("chat") == 4, timeout=60, describe=lambda: world.describe("chat"))
