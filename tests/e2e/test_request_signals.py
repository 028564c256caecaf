"""Replicas scaled on request signals (spec.metrics), by the real operator against the real API server
and Prometheus: the fake exporter serves each pod's vLLM-style gauge while its GPUs stay flat."""

from __future__ import annotations

import pytest

from tests.support.cluster import GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

WAITING = "vllm:num_requests_waiting"
GPU_METRIC = {"type": "Gpu", "target": {"type": "Utilization", "averageUtilization": 60}}
WAITING_METRIC = {
    "type": "Pods",
    "name": "requestsWaiting",
    "query": f'avg by (namespace, pod) ({WAITING}{{namespace="{{{{namespace}}}}", pod=~"{{{{pods}}}}"}})',
    "target": {"type": "AverageValue", "averageValue": 5},
}


def test_requests_waiting_scale_a_deployment_whose_gpus_stay_on_target(
    world: World, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 60)  # on target: GPU utilisation alone changes nothing
    gpu_util.app_metrics(ns, {WAITING: 12}, selector={"app": "chat"})
    spec = {
        "maxReplicas": 4,
        "metrics": [GPU_METRIC, WAITING_METRIC],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
    }
    world.cluster.apply(gpu_workload("chat", "chat", **spec), ns)

    # 12 waiting per pod against 5: ceil(24/5) = 5, capped at maxReplicas.
    wait_for(lambda: world.replicas("chat") == 4, timeout=60, describe=lambda: world.describe("chat"))
    wait_for(
        lambda: any("largest of 2 signals: requestsWaiting" in m for m in world.events("ScaleUp")),
        timeout=20,
        describe=lambda: str(world.events()),
    )

    # The queue drains and the GPUs go quiet: both signals agree on one replica.
    gpu_util.app_metrics(ns, {WAITING: 0}, selector={"app": "chat"})
    gpu_util.set(ns, 10, selector={"app": "chat"})
    wait_for(lambda: world.replicas("chat") == 1, timeout=90, describe=lambda: world.describe("chat"))


def test_a_signal_that_cannot_be_read_blocks_a_scale_down(
    world: World, gpu_util: GpuUtilization, operator: OperatorProcess
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "embed", 3, 10)  # GPU utilisation alone would go down to 1
    queue = {
        "type": "External",
        "name": "queueSeconds",
        "query": 'sum(triton_queue_seconds_that_nobody_exports{namespace="{{namespace}}"})',
        "target": {"type": "Value", "value": 1},
    }
    spec = {"metrics": [GPU_METRIC, queue], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}
    world.cluster.apply(gpu_workload("embed", "embed", **spec), ns)

    wait_for(
        lambda: "queueSeconds unreadable, which blocks a scale-down → keep 3" in world.last_reason("embed"),
        timeout=60,
        describe=lambda: world.describe("embed"),
    )
    assert world.replicas("embed") == 3
    assert "queueSeconds: the query matched nothing" in world.last_reason("embed")
