"""One consolidation pass of a GPUNodePool (PoolManager) against the in-memory API server: failed
drains back off per node, and pools whose selectors overlap act on nothing and say so."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.cluster_snapshot import ClusterState, unschedulable
from rightsizer.adapters.metrics.base import GPU_UTIL, GR_ENGINE_ACTIVE
from rightsizer.adapters.metrics.fake import FakeGpuMetricsSource
from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.core.drain_backoff import BackoffPolicy
from rightsizer.core.errors import MetricsUnavailable
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.drain_steps import ExecutorSettings, Result
from rightsizer.runtime.mapping import read_pool
from rightsizer.runtime.node_pools import PassSettings, PoolManager
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.wiring import fleet_activity
from tests.unit.fake_drain import Clock, FakeDrain
from tests.unit.planner_builders import L4, gpu_node, gpu_pool, kube_list, pod

pytestmark = pytest.mark.unit

FAST: dict[str, Any] = {
    "consolidateAfter": "0s",
    "scaleDownAfter": "0s",
    "disruption": {"budgets": [{"nodes": "1"}]},
}


class Cluster:
    """FakeDrain's nodes and pods plus GPUNodePool documents, read as the pass reads the cluster."""

    def __init__(self, edge: FakeDrain, *pools: dict[str, Any]) -> None:
        self.edge = edge
        self.pools = {p["metadata"]["name"]: p for p in pools}

    def read(self) -> ClusterState:
        items = [*self.edge.nodes.values(), *self.edge.pods.values()]
        return ClusterState(
            snapshot=snapshot_from_document(kube_list(*items)),
            pools=tuple(read_pool(doc) for doc in self.pools.values()),
            pool_documents=self.pools,
            pool_errors={},
            unschedulable=frozenset(unschedulable(self.edge.pods.values())),
        )


def manager(cluster: Cluster, clock: Clock, providers: Mapping[str, FakeProvider]) -> PoolManager:
    executor = Executor(
        cluster.edge,
        providers.get,
        clock=clock,
        sleep=clock.sleep,
        settings=ExecutorSettings(drain_timeout=timedelta(seconds=10), poll_seconds=2),
    )
    return PoolManager(
        reader=cluster,
        executor=executor,
        provider_for=lambda doc: providers[doc["metadata"]["name"]],
        live_nodes=cluster.edge.nodes_list,
        telemetry=Telemetry(),
        clock=clock,
        settings=PassSettings(
            drain_backoff=BackoffPolicy(base=timedelta(seconds=60), cap=timedelta(minutes=10))
        ),
    )


def evictions(edge: FakeDrain) -> list[str]:
    return [call[1] for call in edge.calls if call[0] == "evict"]


def test_a_node_whose_replacements_never_came_is_not_drained_again_until_its_back_off_ends() -> None:
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1), pod("big-1", "a-1", gpus=4)
    )
    edge.polls_until_ready = 10**6  # the evicted pod's replacement never becomes Ready
    clock = Clock()
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        clock,
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )

    first = pools.run_pass("a100")
    assert [o.result for o in first.outcomes] == [Result.TIMED_OUT]
    timed_out = next(e for e in first.events if e.reason == "DrainTimedOut")
    assert "default/web-1" in timed_out.message and "1 failed drain; next attempt in 1m" in timed_out.message
    assert edge.tainted() == set()

    # The replacement lands back on a-0, which makes a-0 a candidate again at once.
    edge.add(pod("web-2", "a-0", gpus=1))
    edge.calls.clear()
    for _ in range(5):
        clock.sleep(2)
        assert pools.run_pass("a100").outcomes == ()
    assert evictions(edge) == [], "drained again during its back-off"

    clock.sleep(60)
    again = pools.run_pass("a100")
    assert evictions(edge) == ["default/web-2"]
    assert [o.result for o in again.outcomes] == [Result.TIMED_OUT]
    assert (
        "2 failed drains; next attempt in 2m"
        in next(e for e in again.events if e.reason == "DrainTimedOut").message
    )


def test_pools_that_select_the_same_nodes_act_on_nothing_while_other_pools_are_served() -> None:
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        pod("web-1", "a-0", gpus=1),
        pod("big-1", "a-1", gpus=4),
        gpu_node("l-0", gpus=4, model=L4),
        gpu_node("l-1", gpus=4, model=L4),
        pod("chat-1", "l-0", gpus=1),
        pod("chat-2", "l-1", gpus=1),
    )
    cluster = Cluster(
        edge,
        gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST),
        gpu_pool("all-a100", selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, **FAST),
        gpu_pool("l4", selector={"rightsizer.io/pool": "l4"}, **FAST),
    )
    providers = {name: FakeProvider(name, []) for name in ("a100", "all-a100")}
    providers["l4"] = FakeProvider("l4", ["l-0", "l-1"])
    pools = manager(cluster, Clock(), providers)

    for name in ("a100", "all-a100"):
        result = pools.run_pass(name)
        assert result.outcomes == ()
        conditions = {c["type"]: c for c in result.status["conditions"]}
        assert conditions["Conflict"]["status"] == "True"
        assert conditions["Ready"]["reason"] == "OverlappingSelectors"
        other = "all-a100" if name == "a100" else "a100"
        assert f"nodes a-0, a-1 also selected by GPUNodePool {other}" in conditions["Conflict"]["message"]
        assert [e.reason for e in result.events] == ["OverlappingSelectors"]
        assert result.status["nodes"] == 0, "shared nodes are counted in neither pool"
    assert edge.calls == [], "no node of the overlapping pools was touched"

    served = pools.run_pass("l4")
    assert [o.result for o in served.outcomes] == [Result.REMOVED]
    assert {c["type"]: c["status"] for c in served.status["conditions"]} == {
        "Ready": "True",
        "Conflict": "False",
        "InputsAvailable": "True",
        "ProviderReady": "True",
    }

    # The overlap is fixed: the pool acts again, and says the conflict is over.
    stored = pools.run_pass("a100").status
    del cluster.pools["all-a100"]
    fixed = pools.run_pass("a100", stored)
    assert {c["type"]: c["status"] for c in fixed.status["conditions"]} == {
        "Ready": "True",
        "Conflict": "False",
        "InputsAvailable": "True",
        "ProviderReady": "True",
    }
    assert "SelectorsDisjoint" in [e.reason for e in fixed.events]
    assert [o.result for o in fixed.outcomes] == [Result.REMOVED]


def unavailable() -> Mapping[str, Decimal]:
    raise MetricsUnavailable("Prometheus", "connection refused", "check the Prometheus URL")


def test_while_gpu_activity_cannot_be_read_no_node_with_pods_is_drained_but_empty_nodes_go() -> None:
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        gpu_node("a-2"),
        pod("web-1", "a-0", gpus=1),
        pod("big-1", "a-1", gpus=4),
    )
    clock = Clock()
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        clock,
        {"a100": FakeProvider("a100", ["a-0", "a-1", "a-2"])},
    )
    pools.activity = unavailable

    held = pools.run_pass("a100")
    assert [(o.node, o.result) for o in held.outcomes] == [("a-2", Result.REMOVED)], "the empty node goes"
    assert evictions(edge) == [] and not edge.tainted() & {"a-0", "a-1"}
    metrics = next(c for c in held.status["conditions"] if c["type"] == "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "MetricsUnavailable")
    assert "connection refused" in metrics["message"]
    assert [e.reason for e in held.events if e.type == "Warning"] == ["MetricsUnavailable"]
    del edge.nodes["a-2"]  # what the provider's removal does to a real cluster

    clock.sleep(5)
    still = pools.run_pass("a100", held.status)
    assert evictions(edge) == [] and still.outcomes == ()
    assert "MetricsUnavailable" not in [e.reason for e in still.events], "one event per outage"

    pools.activity = lambda: {"default/web-1": Decimal(3), "default/big-1": Decimal(80)}
    back = pools.run_pass("a100", still.status)
    assert evictions(edge) == ["default/web-1"], "drains resume once activity is readable"
    assert "MetricsRecovered" in [e.reason for e in back.events]
    assert {c["type"]: c["status"] for c in back.status["conditions"]}["MetricsAvailable"] == "True"


def test_a_query_that_works_but_has_no_fresh_sample_for_any_gpu_pod_is_an_outage_too() -> None:
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1), pod("big-1", "a-1", gpus=4)
    )
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    pools.activity = dict  # the exporter stopped: Prometheus answers, with nothing fresh

    held = pools.run_pass("a100")
    assert held.outcomes == () and evictions(edge) == []
    metrics = next(c for c in held.status["conditions"] if c["type"] == "MetricsAvailable")
    assert "no fresh GPU sample for any of the pool's 2 GPU pod(s)" in metrics["message"]

    # One pod reporting is enough to act on its node; web-1's node stays while web-1 is unknown.
    pools.activity = lambda: {"default/big-1": Decimal(80)}
    pools.run_pass("a100", held.status)
    assert evictions(edge) == ["default/big-1"]


class Unreadable(Cluster):
    """The same cluster, with some inputs unreadable (as the reader reports them) or nothing at all."""

    def __init__(self, edge: FakeDrain, *pools: dict[str, Any]) -> None:
        super().__init__(edge, *pools)
        self.unreadable: dict[str, str] = {}
        self.down = False

    def read(self) -> ClusterState:
        if self.down:
            raise ApiException(status=403, reason="Forbidden")
        return replace(super().read(), unreadable=dict(self.unreadable))


def test_gpuworkloads_that_cannot_be_read_hold_every_drain_with_pods_and_say_so() -> None:
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1), pod("big-1", "a-1", gpus=4)
    )
    cluster = Unreadable(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST))
    pools = manager(cluster, Clock(), {"a100": FakeProvider("a100", ["a-0", "a-1"])})
    cluster.unreadable = {"GPUWorkloads": "HTTP 403 Forbidden"}

    held = pools.run_pass("a100")
    assert held.outcomes == () and evictions(edge) == []
    inputs = next(c for c in held.status["conditions"] if c["type"] == "InputsAvailable")
    assert inputs["status"] == "False" and inputs["reason"] == "InputsUnreadable"
    assert "GPUWorkloads (HTTP 403 Forbidden)" in inputs["message"]
    assert [e.reason for e in held.events] == ["InputsUnreadable"]
    again = pools.run_pass("a100", held.status)
    assert again.events == () and evictions(edge) == [], "one event per change, and still holding"

    cluster.unreadable = {}
    recovered = pools.run_pass("a100", again.status)
    assert "InputsRecovered" in [e.reason for e in recovered.events]
    assert evictions(edge) == ["default/web-1"]


def test_a_provider_that_cannot_act_holds_the_pool_and_says_why_until_it_can() -> None:
    edge = FakeDrain(gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1))
    cluster = Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST))
    provider = FakeProvider("a100", ["a-0", "a-1"])
    pools = manager(cluster, Clock(), {"a100": provider})
    provider.problem = "GPUNodePool a100: Karpenter is not installed; install Karpenter"

    held = pools.run_pass("a100")
    assert held.outcomes == () and edge.calls == [] and provider.removed == [], "not even the empty a-1"
    ready = next(c for c in held.status["conditions"] if c["type"] == "ProviderReady")
    assert ready["status"] == "False" and ready["reason"] == "ProviderUnavailable"
    assert "Karpenter is not installed; install Karpenter" in ready["message"]
    assert [e.reason for e in held.events] == ["ProviderUnavailable"]
    again = pools.run_pass("a100", held.status)
    assert again.events == () and edge.calls == [], "one event per change, and still holding"

    provider.problem = None
    recovered = pools.run_pass("a100", again.status)
    assert "ProviderRecovered" in [e.reason for e in recovered.events]
    assert provider.removed == ["a-1"]


def test_a_cluster_that_cannot_be_read_holds_and_keeps_the_other_conditions() -> None:
    edge = FakeDrain(gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1))
    cluster = Unreadable(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST))
    pools = manager(cluster, Clock(), {"a100": FakeProvider("a100", ["a-0", "a-1"])})
    cluster.unreadable = {"PodDisruptionBudgets": "HTTP 500"}
    stored = pools.run_pass("a100").status  # the empty a-1 may still go: it evicts nothing
    assert evictions(edge) == []
    edge.calls.clear()
    cluster.down = True
    held = pools.run_pass("a100", stored)
    conditions = {c["type"]: c for c in held.status["conditions"]}
    assert conditions["InputsAvailable"]["status"] == "False"
    assert "the cluster (HTTP 403 Forbidden)" in conditions["InputsAvailable"]["message"]
    assert conditions["Ready"] == next(c for c in stored["conditions"] if c["type"] == "Ready")
    assert held.events == () and edge.calls == []


def test_an_unreadable_do_not_disrupt_until_is_reported_once_and_protects() -> None:
    until = {"rightsizer.io/do-not-disrupt-until": "next week"}
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        pod("web-1", "a-0", gpus=1, annotations=until),
        pod("b-1", "a-1", gpus=4),
    )
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    first = pools.run_pass("a100")
    warned = [e for e in first.events if e.reason == "InvalidAnnotation"]
    assert len(warned) == 1 and "pod default/web-1" in warned[0].message
    assert "InvalidAnnotation" not in [e.reason for e in pools.run_pass("a100", first.status).events]
    assert "default/web-1" not in evictions(edge)


def starting_node(name: str) -> dict[str, Any]:
    """A node of the a100 pool that has registered but advertises no GPUs yet."""
    return gpu_node(name, gpus=0, labels={"rightsizer.io/pool": "a100", "nvidia.com/gpu.product": "A100"})


def waiting_pod(name: str, gpus: int) -> dict[str, Any]:
    item = pod(name, None, gpus=gpus, phase="Pending")
    item["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    return item


def test_machines_are_ordered_once_for_the_same_pending_pods_while_they_provision() -> None:
    # A provider that takes its time: the machine counts as ordered at once, its node registers a
    # minute later and advertises its GPUs later still (the device plugin starting).
    edge = FakeDrain(gpu_node("a-0"), pod("full-1", "a-0", gpus=8), waiting_pod("big-1", 8))
    clock = Clock()
    provider = FakeProvider("a100", ["a-0"])
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, gpusPerNode=8, **FAST)),
        clock,
        {"a100": provider},
    )
    first = pools.run_pass("a100")
    assert [e.reason for e in first.events if e.reason == "ScaledUp"] == ["ScaledUp"]
    assert len(provider.added) == 1
    for _ in range(3):  # well past the scale-up cooldown, the node not registered yet
        clock.sleep(61)
        pools.run_pass("a100")
    edge.add(starting_node(provider.added[0]))
    for _ in range(3):
        clock.sleep(61)
        result = pools.run_pass("a100")
        assert result.outcomes == (), "a node still starting is not empty"
    assert len(provider.added) == 1, "the same Pending pod ordered a second machine"
    assert provider.removed == []


def test_a_gpu_node_without_advertised_gpus_is_not_a_consolidation_candidate() -> None:
    edge = FakeDrain(gpu_node("a-0"), starting_node("a-1"), pod("web-1", "a-0", gpus=1))
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, gpusPerNode=8, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    assert pools.run_pass("a100").outcomes == ()
    assert edge.calls == []


def test_a_drain_stops_and_untaints_when_the_rest_no_longer_fits_elsewhere() -> None:
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        pod("web-1", "a-0", gpus=1),
        pod("web-2", "a-0", gpus=1),
        pod("big-1", "a-1", gpus=5),
    )
    # Right after the first eviction another scheduler fills a-1: web-2 has nowhere to go any more.
    edge.on_evict.append(lambda key: edge.add(pod("late-1", "a-1", gpus=3, owner=None)))
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    result = pools.run_pass("a100")
    assert [o.result for o in result.outcomes] == [Result.BLOCKED]
    assert len(evictions(edge)) == 1, "the second pod was evicted although it fits nowhere"
    assert "no longer fits on any other node" in result.outcomes[0].message
    assert edge.tainted() == set()
    assert any(e[2] == "DrainReplanned" for e in edge.events)


CHECKPOINT = {"rightsizer.io/checkpoint-before-evict": "true"}


def checkpoint_cluster(answer_after_polls: int | None) -> tuple[FakeDrain, PoolManager, Clock]:
    """web-1 asks for a checkpoint; its 'trainer' answers after that many polls (None: never)."""
    edge = FakeDrain(
        gpu_node("a-0"),
        gpu_node("a-1"),
        pod("web-1", "a-0", gpus=1, annotations=CHECKPOINT),
        pod("b-1", "a-1", gpus=4),
    )
    clock = Clock()
    pools = manager(
        Cluster(
            edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, checkpointTimeout="1m", **FAST)
        ),
        clock,
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    polls = {"n": 0}
    sleep = clock.sleep

    def trainer(seconds: float) -> None:
        sleep(seconds)
        polls["n"] += 1
        asked = edge.pods["default/web-1"]["metadata"]["annotations"].get("rightsizer.io/evict-requested")
        if asked and answer_after_polls is not None and polls["n"] >= answer_after_polls:
            edge.pods["default/web-1"]["metadata"]["annotations"]["rightsizer.io/checkpoint-done"] = (
                "step-1200"
            )

    pools.executor.sleep = trainer
    return edge, pools, clock


def test_a_pod_that_asks_for_a_checkpoint_is_evicted_only_after_it_answers() -> None:
    edge, pools, _ = checkpoint_cluster(answer_after_polls=3)
    result = pools.run_pass("a100")
    assert [o.result for o in result.outcomes] == [Result.REMOVED]
    asked = next(i for i, c in enumerate(edge.calls) if c[0] == "annotate-pod")
    evicted = next(i for i, c in enumerate(edge.calls) if c[0] == "evict")
    assert asked < evicted, "evicted before it was asked"
    assert any(e[2] == "CheckpointRequested" for e in edge.events)


def test_a_pod_that_never_answers_is_never_evicted_and_its_node_is_kept() -> None:
    edge, pools, _ = checkpoint_cluster(answer_after_polls=None)
    result = pools.run_pass("a100")
    assert [o.result for o in result.outcomes] == [Result.BLOCKED]
    assert evictions(edge) == []
    assert "did not answer rightsizer.io/checkpoint-done within 60s" in result.outcomes[0].message
    assert edge.tainted() == set()
    assert "rightsizer.io/evict-requested" not in edge.pods["default/web-1"]["metadata"]["annotations"]


def test_consolidation_reads_mig_pods_by_gr_engine_active_and_a_pod_by_its_busiest_gpu() -> None:
    clock = Clock()
    source = FakeGpuMetricsSource(clock=lambda: clock.now)
    # A MIG slice reports no GPU_UTIL; its engine is 40% busy.
    source.record("ml", "mig-0", 40.0, signal=GR_ENGINE_ACTIVE)
    # Eight GPUs, one of them busy: the pod is busy, not "4% idle".
    for gpu in range(8):
        source.record("ml", "train-0", 32.0 if gpu == 2 else 0.0, signal=GPU_UTIL, gpu=str(gpu))
    activity = fleet_activity(source, max_age_seconds=60, clock=lambda: clock.now)()
    assert activity == {"ml/mig-0": Decimal(40), "ml/train-0": Decimal(32)}


def test_pool_status_counts_physical_gpus_a_mig_slice_or_time_sliced_replica_as_its_share() -> None:
    mig = gpu_node(
        "a-0", gpus=0, labels={"rightsizer.io/pool": "a100"}, extra={"nvidia.com/mig-1g.10gb": "7"}
    )
    sliced = gpu_node("a-1", gpus=4, labels={"nvidia.com/gpu.replicas": "4"})
    slice_pod = pod("mig-1", "a-0")
    slice_pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/mig-1g.10gb"] = "2"
    edge = FakeDrain(mig, sliced, slice_pod, pod("chat-1", "a-1", gpus=1))
    pool = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, gpusPerNode=8, **FAST)
    pools = manager(Cluster(edge, pool), Clock(), {"a100": FakeProvider("a100", ["a-0", "a-1"])})
    status = pools.run_pass("a100").status
    # Two whole GPUs (seven slices of one, four replicas of the other); 2/7 + 1/4 of them requested.
    assert (status["gpusAllocatable"], status["gpusRequested"]) == (2, 0)
    # Priced as two GPUs at 3.00, not as eleven; unmeasured pods count as busy, so what is idle is
    # what nobody requested: 5/7 and 3/4 of a GPU.
    assert status["costPerHour"] == 6
    assert status["idleCostPerHour"] == pytest.approx(3 * (5 / 7 + 3 / 4), abs=1e-3)


def test_pool_status_cost_counts_cpu_cores_and_gpu_energy_as_workload_cost_does() -> None:
    prices = {"cpuCorePricePerHour": "0.01", "energyPricePerKwh": "0.5", "wattsPerGpu": 250}
    pool = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **prices, **FAST)
    edge = FakeDrain(gpu_node("a-0"), pod("chat-1", "a-0", gpus=8))
    pools = manager(Cluster(edge, pool), Clock(), {"a100": FakeProvider("a100", ["a-0"])})
    status = pools.run_pass("a100").status
    # 8 GPUs x 3.00 + 64 cores x 0.01 + 8 x 250 W x PUE 1 / 1000 x 0.50 per kWh
    assert status["costPerHour"] == 25.64
    assert status["idleCostPerHour"] == 0  # its one pod is unmeasured: busy, never idle


def test_a_node_the_provider_never_removes_holds_the_pool_until_it_is_gone() -> None:
    # a-0 is removed first; a-1 is protected until a-0 has been stuck past the removal timeout.
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), gpu_node("a-2"), pod("big-1", "a-2", gpus=8, owner=None)
    )
    edge.nodes["a-1"]["metadata"]["annotations"] = {"rightsizer.io/do-not-disrupt": "true"}
    budgets = {**FAST, "disruption": {"budgets": [{"nodes": "100%"}]}}
    cluster = Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **budgets))
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])  # removes nothing from the cluster: stuck
    clock = Clock()
    pools = manager(cluster, clock, {"a100": provider})
    pools.settings = replace(pools.settings, removal_timeout=timedelta(minutes=1))

    first = pools.run_pass("a100")
    assert [o.result for o in first.outcomes] == [Result.REMOVED] and provider.removed == ["a-0"]
    clock.sleep(30)
    waiting = pools.run_pass("a100", first.status)
    assert waiting.events == (), "asked once: the removal is neither resumed nor reported before the bound"
    clock.sleep(31)
    stuck = pools.run_pass("a100", waiting.status)
    ready = next(c for c in stuck.status["conditions"] if c["type"] == "ProviderReady")
    assert (ready["status"], ready["reason"]) == ("False", "RemovalStuck")
    assert "node(s) a-0 (1m1s ago) was asked of fake" in ready["message"], ready["message"]
    assert [e.reason for e in stuck.events] == ["RemovalStuck"]

    del edge.nodes["a-1"]["metadata"]["annotations"]["rightsizer.io/do-not-disrupt"]
    status = stuck.status
    for _ in range(3):
        clock.sleep(2)
        held = pools.run_pass("a100", status)
        status = held.status
        assert held.outcomes == () and held.events == (), "one event per change, and still holding"
    assert provider.removed == ["a-0"], "a-1 drained while the provider was not removing nodes"

    del edge.nodes["a-0"]  # the provider finally removes it
    recovered = pools.run_pass("a100", status)
    assert "ProviderRecovered" in [e.reason for e in recovered.events]
    assert provider.removed == ["a-0", "a-1"]


def test_pending_pods_that_fit_a_node_registered_since_order_no_machine() -> None:
    # Two machines came up and advertise their GPUs; the scheduler has not placed the two Pending pods
    # on them yet (still flagged unschedulable). A third machine is on its way for a third pod.
    edge = FakeDrain(gpu_node("a-0"), gpu_node("a-1"), waiting_pod("big-1", 8), waiting_pod("big-2", 8))
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])  # ordered: three; registered: two
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, gpusPerNode=8, **FAST)),
        Clock(),
        {"a100": provider},
    )
    result = pools.run_pass("a100")
    assert "ScaledUp" not in [e.reason for e in result.events]
    assert provider.added == [], "room that registered since was not counted"


def test_pending_pods_order_a_node_only_when_they_would_run_on_the_one_the_pool_adds() -> None:
    # The pool's nodes carry its template's taint and zone: a pod that does not tolerate the taint,
    # or wants another zone, would stay Pending on a new node, so none is ordered for it.
    template = {
        "labels": {"topology.kubernetes.io/zone": "zone-b"},
        "taints": [{"key": "gpu-only", "effect": "NoSchedule"}],
    }
    spec = {**FAST, "currency": "EUR", "provider": {"type": "kwok", "nodeTemplate": template}}
    edge = FakeDrain(gpu_node("a-0"), pod("full-1", "a-0", gpus=8), waiting_pod("plain-1", 8))
    other_zone = waiting_pod("elsewhere-1", 8)
    other_zone["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": "zone-a"}
    other_zone["spec"]["tolerations"] = [{"key": "gpu-only", "operator": "Exists"}]
    edge.add(other_zone)
    provider = FakeProvider("a100", ["a-0"])
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **spec)),
        Clock(),
        {"a100": provider},
    )
    held = pools.run_pass("a100")
    assert "ScaledUp" not in [e.reason for e in held.events] and provider.added == []
    assert held.status["currency"] == "EUR"

    tolerating = waiting_pod("tolerant-1", 8)
    tolerating["spec"]["tolerations"] = [{"key": "gpu-only", "operator": "Exists"}]
    tolerating["spec"]["nodeSelector"] = {
        "topology.kubernetes.io/zone": "zone-b",
        "rightsizer.io/pool": "a100",
    }
    edge.add(tolerating)
    ordered = pools.run_pass("a100")
    assert "ScaledUp" in [e.reason for e in ordered.events] and len(provider.added) == 1
