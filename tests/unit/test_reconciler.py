"""The workload loop end to end in memory: observe → decide → act → describe, with fakes at the edge."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rightsizer.adapters.cluster_view import ScalerRef
from rightsizer.adapters.kube import TargetRef
from rightsizer.devcluster.memory_cluster import MemoryCluster

pytestmark = pytest.mark.unit


def condition(status: dict[str, object], kind: str) -> dict[str, object]:
    for cond in status.get("conditions") or []:  # type: ignore[attr-defined]
        if cond["type"] == kind:
            return dict(cond)
    return {}


def test_busy_inference_is_scaled_to_the_computed_count_and_explained() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=90)
    c.workload("ml", "chat")
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 3
    assert ("scale", "ml", "chat", 3) in c.targets.writes
    assert "ceil(2×90/60)=3" in result.status["lastDecision"]["reason"]
    assert [e.reason for e in result.events] == ["ScaleUp"]


def test_recommend_mode_writes_no_replicas() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=90)
    c.workload("ml", "chat", mode="Recommend")
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 2
    assert not [w for w in c.targets.writes if w[0] == "scale"]
    assert result.status["replicas"]["desired"] == 3


def test_a_pod_without_series_means_hold_never_scale_down() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 3, util=None)
    c.metrics.record("ml", "chat-0", 5.0, at=c.now)  # one of three pods reports
    c.workload("ml", "chat", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 3
    assert condition(result.status, "MetricsAvailable")["status"] == "False"
    assert result.status["lastDecision"]["action"] == "Hold"


def test_stale_metrics_hold() -> None:
    c = MemoryCluster(interval=30)
    c.deployment("ml", "chat", 2, util=5)
    c.workload("ml", "chat", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    c.now += timedelta(seconds=90)  # samples are three intervals old; two is the limit
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 2
    assert condition(result.status, "MetricsAvailable")["reason"] == "StaleMetrics"


def test_hpa_on_the_same_target_is_a_conflict() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=95)
    c.hpas["ml"] = [ScalerRef("HorizontalPodAutoscaler/chat", "Deployment", "chat", "apps")]
    c.workload("ml", "chat")
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 2
    assert condition(result.status, "Conflict")["status"] == "True"


def test_cost_is_written_on_target_and_pods() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=60)
    c.workload("ml", "chat", pricing={"pricePerGpuHour": 2, "currency": "EUR"})
    c.reconcile("ml", "chat")
    target = c.targets.scales[("ml", "Deployment", "chat")].annotations
    assert target["rightsizer.io/currency"] == "EUR"
    assert target["rightsizer.io/gpu-efficiency"] == "0.600"
    assert c.targets.pod_annotations[("ml", "chat-0")]["rightsizer.io/workload"] == "chat"


def test_one_metrics_query_per_pass_whatever_the_number_of_workloads() -> None:
    c = MemoryCluster()
    for i in range(50):
        c.deployment("ml", f"svc{i}", 2, util=60)
        c.workload("ml", f"svc{i}")
    for i in range(50):
        c.reconcile("ml", f"svc{i}")
    assert len(c.metrics.queries) == 1


def test_a_pass_on_a_stale_view_holds_and_says_why_once() -> None:
    from rightsizer.core.status import Problem

    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=90)
    c.workload("ml", "chat")
    obj = c.objects[("ml", "chat")]
    stale = Problem("CacheStale", "cluster view stale: watch of /api/v1/pods broken")
    held = c.reconciler.hold(obj, c.now, stale)
    assert c.replicas("ml", "chat") == 2 and not c.targets.writes
    assert condition(held.status, "Ready")["reason"] == "CacheStale"
    assert [e.reason for e in held.events] == ["CacheStale"]
    obj["status"] = held.status
    assert c.reconciler.hold(obj, c.now, stale).events == [], "one event per outage"
    assert c.reconcile("ml", "chat").status["replicas"]["desired"] == 3  # listed again: it acts


@pytest.mark.parametrize(("busy_gpu_percent", "suspended"), [(30.0, False), (0.0, True)])
def test_an_eight_gpu_pod_with_one_busy_gpu_is_never_suspended(
    busy_gpu_percent: float, suspended: bool
) -> None:
    c = MemoryCluster()
    c.deployment("ml", "train", 1, util=None, gpus=8)
    c.workload(
        "ml",
        "train",
        workloadType="Training",
        idlePolicy={"thresholdPercent": 5, "idleFor": "10m", "action": "Suspend"},
    )
    for _ in range(3):
        for gpu in range(8):
            c.metrics.record("ml", "train-0", busy_gpu_percent if gpu == 3 else 0.0, at=c.now, gpu=str(gpu))
        c.reconcile("ml", "train")
        c.now += timedelta(minutes=6)
    # The pod's mean is 3.75%, below the threshold; its busiest GPU is not.
    assert (c.replicas("ml", "train") == 0) is suspended


def test_a_four_gpu_pod_using_one_gpu_is_told_one_gpu_would_do() -> None:
    c = MemoryCluster()
    c.deployment("ml", "serve", 1, util=None, gpus=4)
    c.workload("ml", "serve", mode="Recommend")
    result = None
    for _ in range(12):  # 12 minutes of samples: past the ten the advice needs
        for gpu in range(4):
            c.metrics.record("ml", "serve-0", 55.0 if gpu == 0 else 0.0, at=c.now, gpu=str(gpu))
        result = c.reconcile("ml", "serve")
        c.now += timedelta(minutes=1)
    assert result is not None
    # The pod's mean is under 14%: read as a mean per GPU, every GPU would look equally (a little) busy.
    assert result.status["recommendations"]["gpusPerReplica"] == 1


def test_a_workload_on_a_time_sliced_gpu_says_so_and_is_not_scaled_down_on_the_devices_number() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=None)
    c.workload("ml", "chat", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    result = None
    for _ in range(12):
        # chat-0 shares its GPU with a pod of another workload; the device reads 2%.
        c.metrics.record("ml", "chat-0", 2.0, at=c.now, device="GPU-shared")
        c.metrics.record("batch", "etl-0", 2.0, at=c.now, device="GPU-shared")
        c.metrics.record("ml", "chat-1", 0.0, at=c.now)
        result = c.reconcile("ml", "chat")
        c.now += timedelta(minutes=1)
    assert result is not None
    assert c.replicas("ml", "chat") == 2
    assert result.status["utilization"]["sharedGpu"] is True
    assert result.status["lastDecision"]["action"] == "Hold"
    assert "SharedGpu" in result.status["lastDecision"]["reason"]
    assert c.telemetry.decisions.value("Hold", "SharedGpu") == 12


@pytest.mark.parametrize(
    ("leaving", "expected"),
    [
        pytest.param({"deleting": True, "ready": False}, 3, id="a-pod-being-deleted"),
        pytest.param({"phase": "Failed", "ready": False}, 3, id="a-failed-pod"),
        pytest.param({"phase": "Pending", "ready": False}, 2, id="a-pod-still-starting-damps-it"),
    ],
)
def test_only_pods_on_their_way_up_damp_a_scale_up_as_for_hpa(
    leaving: dict[str, object], expected: int
) -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 3, util=90)
    c.pods["ml"][2] = replace(c.pods["ml"][2], **leaving)
    c.targets.add("ml", TargetRef("apps/v1", "Deployment", "chat"), 2, "app=chat")
    c.workload("ml", "chat")
    # Two Ready pods at 90% against 60%: 3. A third pod that is starting counts as idle and holds
    # the count (90+90+0 over 3 is 60%); one that is leaving is not counted at all.
    c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == expected


@pytest.mark.parametrize(("delay", "replicas"), [(0, 2), (60, 3)])
def test_a_pod_ready_for_less_than_the_readiness_delay_is_neither_busy_nor_idle(
    delay: int, replicas: int
) -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 3, util=60)
    # chat-2 became Ready 10 s ago and still loads its model: 0% so far.
    loading = replace(c.pods["ml"][2], ready_since=c.now - timedelta(seconds=10))
    c.pods["ml"][2] = loading
    c.metrics.record("ml", "chat-2", 0.0, at=c.now)
    c.workload(
        "ml",
        "chat",
        initialReadinessDelaySeconds=delay,
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    result = c.reconcile("ml", "chat")
    # Counted, it drags the mean to 40% and one replica goes; warming up, the others are on target.
    assert c.replicas("ml", "chat") == replicas, result.status["lastDecision"]["reason"]


@pytest.mark.parametrize(
    ("scale_up", "replicas"),
    [
        (None, 20),  # HPA's default: the larger of 4 pods or 100% per 15 s
        ({"stabilizationWindowSeconds": 0, "maxStep": 4}, 14),
        ({"stabilizationWindowSeconds": 0, "maxPercent": 50}, 15),
        ({"stabilizationWindowSeconds": 0, "maxStep": 12, "maxPercent": 50}, 22),  # the larger
        ({"maxStep": 12, "maxPercent": 50, "periodSeconds": 60}, 22),  # the window is HPA's 0
        ({"policies": [{"type": "Percent", "value": 300, "periodSeconds": 60}]}, 40),
        ({"selectPolicy": "Min"}, 14),  # HPA's two default policies, the smaller change
        ({"selectPolicy": "Disabled"}, 10),
        (
            {
                "selectPolicy": "Min",
                "policies": [
                    {"type": "Pods", "value": 30, "periodSeconds": 15},
                    {"type": "Percent", "value": 200, "periodSeconds": 60},
                ],
            },
            30,
        ),
    ],
)
def test_a_jump_is_limited_per_period_as_hpa_limits_it(
    scale_up: dict[str, object] | None, replicas: int
) -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 10, util=100)  # 10 x 100 / 20 = 50 wanted
    behavior = {"scaleUp": scale_up} if scale_up else {}
    c.workload("ml", "chat", targetUtilization=20, maxReplicas=60, behavior=behavior)
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == replicas, result.status["lastDecision"]["reason"]


@pytest.mark.parametrize(
    ("util", "behavior", "replicas"),
    [
        (64, {}, 4),  # 6.7% over target: inside the shared 10%
        (64, {"scaleUp": {"stabilizationWindowSeconds": 0, "tolerance": 0.05}}, 5),
        (40, {"scaleDown": {"stabilizationWindowSeconds": 0}}, 3),  # 33% under: down
        (40, {"scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": 0.5}}, 4),
        # A scale-down tolerance of 1 or more turns scale-down off (HPA reads it the same way).
        (5, {"scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": 1}}, 4),
    ],
)
def test_each_direction_may_have_its_own_tolerance(
    util: float, behavior: dict[str, object], replicas: int
) -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 4, util=util)
    c.workload("ml", "chat", behavior=behavior)
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == replicas, result.status["lastDecision"]["reason"]
