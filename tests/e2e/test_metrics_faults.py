"""Metrics that cannot be trusted mean hold: a condition with the reason, a Warning event, no scaling;
decisions resume when the metrics are healthy again. The real operator process against the real
API server; Prometheus is the cluster's real one behind a proxy that misbehaves on demand, and DCGM
endpoints are the fake exporter's per-node pages, two of them broken on purpose.

Prometheus being down altogether is covered in test_workloads.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.faulty_prometheus import FaultyPrometheus, Mode
from tests.support.fleet import Fleet, gpu_app
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

INTERVAL = 3
QUERY_TIMEOUT = 1  # seconds; the proxy's "slow" answers take 3

# mode, MetricsAvailable reason, what the message says. Neighbouring phases have different reasons,
# so each phase gets an event of its own.
FAULTS: list[tuple[Mode, str, str]] = [
    ("slow", "NoMetrics", f"did not answer within {float(QUERY_TIMEOUT)}s"),
    ("nan", "InvalidMetrics", "NaN utilisation"),
    ("empty", "NoMetrics", "no GPU samples"),
    ("stale", "StaleMetrics", "old (> 6s)"),
]


def metrics_condition(world: World, name: str) -> dict[str, Any]:
    return world.condition(name, "MetricsAvailable") or {}


def holding(world: World, name: str, reason: str | None, says: str) -> Callable[[], bool]:
    """MetricsAvailable=False (with this reason, when given) and a message that says `says`."""

    def check() -> bool:
        condition = metrics_condition(world, name)
        return (
            condition.get("status") == "False"
            and reason in (None, condition.get("reason"))
            and says in condition.get("message", "")
        )

    return check


def warned(world: World, reason: str, says: str) -> Callable[[], bool]:
    return lambda: any(says in m for m in world.events(reason))


def test_slow_empty_nan_or_stale_prometheus_answers_hold_scaling_until_prometheus_is_healthy(
    cluster: Cluster, world: World, gpu_util: GpuUtilization
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 60)
    with (
        FaultyPrometheus.start(cluster.prometheus_url) as prometheus,
        OperatorProcess.start(
            cluster.kubeconfig,
            ns,
            prometheus.url,
            interval=INTERVAL,
            extra_args=("--prometheus-timeout", str(QUERY_TIMEOUT)),
        ) as operator,
    ):
        world.cluster.apply(gpu_workload("chat", "chat"), ns)
        wait_for(
            lambda: metrics_condition(world, "chat").get("status") == "True",
            timeout=30,
            describe=lambda: world.describe("chat"),
        )
        assert world.replicas("chat") == 2  # 60% is on target

        for mode, reason, says in FAULTS:
            prometheus.mode = mode
            if mode == "slow":
                gpu_util.set(ns, 95, selector={"app": "chat"})  # healthy metrics would now scale up
            wait_for(
                holding(world, "chat", reason, says),
                timeout=30,
                describe=lambda: f"{world.describe('chat')}\n{operator.log()[-2000:]}",
            )
            wait_for(warned(world, reason, says), timeout=20, describe=lambda: str(world.events()))
            assert world.replicas("chat") == 2, f"scaled on {mode} metrics"
            assert world.workload("chat")["status"]["lastDecision"]["action"] == "Hold"

        held_since = time.monotonic()
        prometheus.mode = "healthy"
        wait_for(lambda: world.replicas("chat") > 2, timeout=60, describe=lambda: world.describe("chat"))
        assert time.monotonic() - held_since < 60
        # The new replicas hold the workload until Prometheus has scraped them; then it is healthy.
        wait_for(
            lambda: metrics_condition(world, "chat").get("status") == "True",
            timeout=30,
            describe=lambda: world.describe("chat"),
        )


def test_a_garbled_or_exploding_exporter_holds_its_workloads_while_a_healthy_one_is_served(
    cluster: Cluster, namespace: str, fleet: Fleet, gpu_util: GpuUtilization
) -> None:
    healthy, garbled, exploding = fleet.add_nodes("a100", A100_80GB_X8, 3)
    exporter = cluster.dcgm_url.removesuffix("/metrics")
    endpoints = {
        "good": f"{exporter}/nodes/{healthy}/metrics",
        "garbled": f"{exporter}/nodes/{garbled}/metrics?fault=garbled",
        "exploding": f"{exporter}/nodes/{exploding}/metrics?fault=explode&series=3000",
    }
    world = World(cluster, namespace)
    gpu_util.set(namespace, 95)
    for app, node in (("good", healthy), ("garbled", garbled), ("exploding", exploding)):
        cluster.apply(gpu_app(fleet, app, "a100", 1, node=node), namespace)
    for app in endpoints:
        world.wait_ready(app, 1)

    args = [arg for url in endpoints.values() for arg in ("--dcgm-endpoint", url)]
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        interval=INTERVAL,
        extra_args=(*args, "--dcgm-max-series", "1000"),
    ) as operator:
        for app in endpoints:
            cluster.apply(
                gpu_workload(app, app, maxReplicas=2, metric={"source": "DCGM", "window": "10s"}), namespace
            )
        # One replica at 95% against a 60% target: the healthy workload scales to ceil(1×95/60)=2.
        wait_for(
            lambda: world.replicas("good") == 2,
            timeout=45,
            describe=lambda: f"{world.describe('good')}\n{operator.log()[-2000:]}",
        )
        for app, says in (("garbled", "invalid value 'N/A'"), ("exploding", "more than 1000 series")):
            wait_for(holding(world, app, "NoMetrics", says), timeout=30, describe=world.describe)
            assert endpoints[app] in metrics_condition(world, app)["message"]
            wait_for(warned(world, "NoMetrics", says), timeout=20, describe=lambda: str(world.events()))
            assert world.replicas(app) == 1, f"{app} scaled on metrics it could not read"
        assert metrics_condition(world, "good")["status"] == "True"
