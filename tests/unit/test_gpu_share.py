"""A pod's GPU cost is priced on the share of a physical GPU it reserves: whole GPUs, time-sliced
replicas and MIG slices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from rightsizer.adapters.kube import pod_info
from rightsizer.core.gpu_share import gpu_share, shares_a_gpu, single_mig_profile
from rightsizer.devcluster.memory_cluster import MemoryCluster

pytestmark = pytest.mark.unit

A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
A30 = {"nvidia.com/gpu.product": "NVIDIA-A30"}
SLICED = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.replicas": "4"}


def D(value: int | Fraction) -> Decimal:
    value = Fraction(value)
    return Decimal(value.numerator) / Decimal(value.denominator)


@pytest.mark.parametrize(
    ("requests", "labels", "share"),
    [
        pytest.param({"nvidia.com/gpu": 2}, A100, D(2), id="whole-gpus"),
        pytest.param({"nvidia.com/gpu": 1}, SLICED, D(Fraction(1, 4)), id="one-time-sliced-replica"),
        pytest.param({"nvidia.com/gpu.shared": 2}, SLICED, D(Fraction(1, 2)), id="renamed-shared-resource"),
        pytest.param({"nvidia.com/mig-1g.10gb": 1}, A100, D(Fraction(1, 7)), id="mig-slice-of-an-a100"),
        pytest.param({"nvidia.com/mig-3g.40gb": 2}, A100, D(Fraction(6, 7)), id="two-mig-slices"),
        pytest.param({"nvidia.com/mig-1g.6gb": 1}, A30, D(Fraction(1, 4)), id="mig-slice-of-an-a30"),
        pytest.param({"nvidia.com/mig-2g.20gb": 1}, {}, D(Fraction(2, 7)), id="mig-on-an-unlabelled-node"),
        # What cannot be known is priced as a whole GPU: overstated, never hidden.
        pytest.param({"nvidia.com/mig-weird": 1}, A100, D(1), id="unreadable-profile"),
        pytest.param({"nvidia.com/gpu": 1}, {"nvidia.com/gpu.replicas": "x"}, D(1), id="unreadable-replicas"),
        pytest.param({"cpu": 4, "example.com/fpga": 1}, A100, D(0), id="no-gpus"),
    ],
)
def test_the_share_of_a_physical_gpu_a_pod_reserves(
    requests: dict[str, int], labels: dict[str, str], share: Decimal
) -> None:
    got = gpu_share({k: Decimal(v) for k, v in requests.items()}, labels)
    assert got == pytest.approx(share, abs=Decimal("1e-20"))


def test_a_pod_reads_its_mig_and_shared_requests_from_limits_or_requests() -> None:
    pod = pod_info(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}},
                    {"resources": {"requests": {"nvidia.com/mig-1g.10gb": "2", "cpu": "1"}}},
                    {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}},
                ]
            },
        }
    )
    assert pod.gpu_requests == {"nvidia.com/mig-1g.10gb": Decimal(3), "nvidia.com/gpu": Decimal(1)}
    assert pod.gpus == 1


PRICING = {"pricePerGpuHour": 7, "currency": "EUR"}


def priced(util: float | None, **pod: object) -> MemoryCluster:
    """One replica on one node; no CPU, so the cost is the GPU's (its price and rated energy)."""
    c = MemoryCluster()
    c.deployment("ml", "chat", 1, util=util)
    c.pods["ml"] = [replace(p, cpu=Decimal(0), **pod) for p in c.pods["ml"]]
    c.workload("ml", "chat", mode="Recommend", pricing=PRICING)
    return c


def whole_gpu_cost_per_hour() -> float:
    return float(priced(util=100).reconcile("ml", "chat").status["cost"]["perHour"])


def test_a_mig_slice_is_priced_as_its_share_of_the_gpu() -> None:
    c = priced(util=50, gpus=0, gpu_requests={"nvidia.com/mig-1g.10gb": Decimal(1)})
    cost = c.reconcile("ml", "chat").status["cost"]
    # A 1g.10gb slice is a seventh of an A100; half busy, so half of the slice's GPU price is idle.
    assert cost["perHour"] == pytest.approx(whole_gpu_cost_per_hour() / 7, abs=1e-3)
    assert (cost["idlePerHour"], cost["gpuEfficiency"]) == (0.5, 0.5)


def test_a_time_sliced_gpu_is_split_among_its_sharers_and_its_use_is_unknown() -> None:
    c = priced(util=None)
    c.nodes["node-0"] = [{**SLICED}]
    c.metrics.record("ml", "chat-0", 100.0, at=c.now, device="GPU-shared")
    c.metrics.record("batch", "etl-0", 100.0, at=c.now, device="GPU-shared")
    cost = c.reconcile("ml", "chat").status["cost"]
    # A quarter of the GPU, whatever the device's 100% says: that number is everyone's.
    assert cost["perHour"] == pytest.approx(whole_gpu_cost_per_hour() / 4, abs=1e-3)
    assert cost["idlePerHour"] is None


def test_a_busy_one_slice_replica_is_told_the_larger_slice_it_needs() -> None:
    c = priced(util=None, gpus=0, gpu_requests={"nvidia.com/mig-1g.10gb": Decimal(1)})
    result = None
    for _ in range(12):  # past the ten minutes the advice needs
        c.metrics.record(
            "ml", "chat-0", 90.0, at=c.now, memory_used_mib=6000, signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE"
        )
        result = c.reconcile("ml", "chat")
        c.now += timedelta(minutes=1)
    assert result is not None
    advice = result.status["recommendations"]
    # Read as a share of a whole A100, 90% of a seventh is 13%: a bigger slice, never "a smaller one".
    assert advice["migProfile"] == "2g.20gb"
    assert "of the 1g.10gb slice" in advice["reason"]


@pytest.mark.parametrize(
    ("requests", "profile"),
    [
        ([{"nvidia.com/mig-1g.10gb": 1}, {"nvidia.com/mig-1g.10gb": 1}], "1g.10gb"),
        ([{"nvidia.com/mig-1g.10gb": 1}, {"nvidia.com/mig-2g.20gb": 1}], None),
        ([{"nvidia.com/mig-1g.10gb": 2}], None),
        ([{"nvidia.com/gpu": 1}], None),
        ([{"nvidia.com/mig-1g.10gb": 1, "nvidia.com/gpu": 1}], None),
    ],
)
def test_mig_advice_is_for_replicas_of_exactly_one_slice(
    requests: list[dict[str, int]], profile: str | None
) -> None:
    assert single_mig_profile([{k: Decimal(v) for k, v in r.items()} for r in requests]) == profile


def test_a_mig_workload_reading_gpu_util_is_told_which_signal_reads_its_slices() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 1, util=None)
    c.pods["ml"] = [
        replace(p, gpus=0, gpu_requests={"nvidia.com/mig-1g.10gb": Decimal(1)}) for p in c.pods["ml"]
    ]
    c.workload("ml", "chat", mode="Recommend", metric={"signal": "DCGM_FI_DEV_GPU_UTIL"})
    # The slice reports its engine activity only, as MIG instances do.
    c.metrics.record("ml", "chat-0", 40.0, at=c.now, signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE")
    status = c.reconcile("ml", "chat").status
    metrics = next(cond for cond in status["conditions"] if cond["type"] == "MetricsAvailable")
    assert metrics["reason"] == "NoMetrics"
    assert (
        "report no DCGM_FI_DEV_GPU_UTIL; signal Auto or DCGM_FI_PROF_GR_ENGINE_ACTIVE reads them"
        in (metrics["message"])
    )


@pytest.mark.parametrize(
    ("meta", "phase", "starting"),
    [
        ({}, "Pending", True),
        ({"deletionTimestamp": "2026-12-01T00:00:00Z"}, "Running", False),
        ({}, "Failed", False),
        ({}, "Succeeded", False),
    ],
)
def test_a_pod_not_ready_is_starting_only_on_its_way_up(
    meta: dict[str, str], phase: str, starting: bool
) -> None:
    pod = pod_info({"metadata": {"name": "p", **meta}, "spec": {}, "status": {"phase": phase}})
    assert (pod.ready, pod.starting) == (False, starting)


def test_a_pod_on_a_time_sliced_gpu_is_shared_even_when_only_it_has_labels() -> None:
    # dcgm-exporter without --kubernetes-virtual-gpus labels one sharer: no other series names the GPU.
    c = MemoryCluster()
    c.nodes["node-0"] = [{**SLICED}]
    c.nodes["node-1"] = [{**SLICED}]
    c.deployment("ml", "chat", 2, util=3)
    c.workload("ml", "chat", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    status = c.reconcile("ml", "chat").status
    assert status["utilization"]["sharedGpu"] is True
    assert status["lastDecision"]["action"] == "Hold"
    assert c.replicas("ml", "chat") == 2


@pytest.mark.parametrize(
    ("requests", "labels", "shared"),
    [
        ({"nvidia.com/gpu": 1}, SLICED, True),
        ({"nvidia.com/gpu": 1}, A100, False),
        ({"nvidia.com/gpu.shared": 1}, {}, True),
        ({"nvidia.com/mig-1g.10gb": 1}, A100, False),
        ({"nvidia.com/gpu": 1}, {"nvidia.com/gpu.replicas": "1"}, False),
        ({"nvidia.com/gpu": 1}, {"nvidia.com/gpu.replicas": "x"}, True),  # unreadable: not trusted
    ],
)
def test_which_requests_share_a_gpu(requests: dict[str, int], labels: dict[str, str], shared: bool) -> None:
    assert shares_a_gpu({k: Decimal(v) for k, v in requests.items()}, labels) is shared


def test_a_ready_pod_is_warming_until_its_ready_condition_is_older_than_the_delay() -> None:
    since = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T12:00:00Z"}
    pod = pod_info(
        {"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Running", "conditions": [ready]}}
    )
    assert pod.ready_since == since
    assert pod.warming(since + timedelta(seconds=29), timedelta(seconds=30))
    assert not pod.warming(since + timedelta(seconds=30), timedelta(seconds=30))
    # A Ready condition without a readable time is taken as warm: never a reason to wait for ever.
    unreadable = {**ready, "lastTransitionTime": "soon"}
    pod = pod_info({"metadata": {"name": "p"}, "spec": {}, "status": {"conditions": [unreadable]}})
    assert pod.ready and not pod.warming(since, timedelta(seconds=30))
