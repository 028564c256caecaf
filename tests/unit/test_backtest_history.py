"""A workload's Prometheus history as the timeline `rightsizer backtest --since` replays: which pods,
when they existed, what each step measured, how many replicas ran."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.adapters.metrics.base import GPU_UTIL, GpuSeries
from rightsizer.api.v1alpha1 import GPUWorkloadSpec
from rightsizer.runtime.backtest import TimelinePod, replay
from rightsizer.runtime.history import NoHistory, Signals, build_timeline, pod_pattern

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
STEP = 10
SPEC_BODY: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
    "workloadType": "Inference",
    "targetUtilization": 60,
    "minReplicas": 1,
    "maxReplicas": 6,
    "metric": {"window": "0s"},  # each step reads its own point: the cases below stay readable
    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
}
SPEC = GPUWorkloadSpec.model_validate(SPEC_BODY)


def at(step: int) -> datetime:
    return T0 + timedelta(seconds=step * STEP)


def times(count: int) -> list[datetime]:
    return [at(i) for i in range(count)]


def gpu(pod: str, values: Sequence[float | None], gpu_id: str = "0", start: int = 0) -> GpuSeries:
    """One GPU's points, one per step from `start`; None: no sample at that step."""
    points = [(at(start + i), float(v)) for i, v in enumerate(values) if v is not None]
    return GpuSeries("ml", pod, f"{pod}/{gpu_id}", signal=points, signal_name=GPU_UTIL)


def step_pods(history: Any, index: int) -> dict[str, TimelinePod]:
    return {p.name: p for p in history.timeline.steps[index].pods}


# -- which pods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("chat-7d9f8b6c5d-x2x4z", True),  # hash and suffix from the generated-name alphabet
        ("chat-5b8cd-4fz2q", True),
        ("chat-v2-7d9f8b6c5d-x2x4z", False),  # another Deployment whose name starts with chat-
        ("chat-x2x4z", False),  # a Job's or a bare ReplicaSet's pod
        ("chat-7d9f8b6c5d-x2x4a", False),  # vowels are never generated
        ("chat-7d9f8b6c5d-x2x4zz", False),
        ("xchat-7d9f8b6c5d-x2x4z", False),
        ("chat-manual", True),  # there now, found by the target's selector
    ],
)
def test_a_deployments_pods_are_found_by_name_now_and_in_history(name: str, matches: bool) -> None:
    pattern = pod_pattern("apps", "Deployment", "chat", ["chat-manual"])
    assert pattern is not None
    assert bool(re.fullmatch(pattern, name)) is matches


@pytest.mark.parametrize(
    ("group", "kind", "name", "matches"),
    [
        ("apps", "StatefulSet", "db-0", True),
        ("apps", "StatefulSet", "db-12", True),
        ("apps", "StatefulSet", "db-01", False),
        ("apps", "StatefulSet", "db-1-0", False),  # StatefulSet db-1's pod
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "db-2", True),  # group 2's leader
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "db-2-3", True),  # and a worker of it
        ("leaderworkerset.x-k8s.io", "LeaderWorkerSet", "db-x-3", False),
        ("argoproj.io", "Rollout", "db-7d9f8b6c5d-x2x4z", True),
        ("batch", "Job", "db-x2x4z", True),
        ("batch", "Job", "db-3-x2x4z", True),  # an indexed Job's pod
    ],
)
def test_each_kind_names_its_pods_its_own_way(group: str, kind: str, name: str, matches: bool) -> None:
    pattern = pod_pattern(group, kind, "db", [])
    assert pattern is not None
    assert bool(re.fullmatch(pattern, name)) is matches


def test_names_are_escaped_and_kinds_without_a_rule_read_only_the_pods_there_now() -> None:
    pattern = pod_pattern("ray.io", "RayCluster", "r.1", ["r.1-head-x"])
    assert pattern == "^(?:r\\.1-head-x)$"
    assert pod_pattern("ray.io", "RayCluster", "r", []) is None


# -- what each step measured ----------------------------------------------------------------------


def test_a_steady_history_replays_as_the_operator_would_decide() -> None:
    history = build_timeline(SPEC, [gpu("chat-a", [90] * 3), gpu("chat-b", [90] * 3)], times(3))
    assert history.timeline.replicas == 2
    assert [p.utilization for p in history.timeline.steps[0].pods] == [90, 90]
    first = replay(history.timeline, STEP, timedelta(seconds=2 * STEP))[0]
    assert (first.action, first.replicas) == ("ScaleUp", 3)
    assert "ceil(2×90/60)=3" in first.reason
    assert history.replicas_from == "the pods with a GPU series at each step"


def test_a_gap_in_a_pods_series_is_unknown_never_zero() -> None:
    # chat-b has no sample at step 1 and 2 but is there before and after: a gap, not a pod gone.
    history = build_timeline(SPEC, [gpu("chat-a", [10] * 4), gpu("chat-b", [10, None, None, 10])], times(4))
    gap = step_pods(history, 1)
    assert set(gap) == {"chat-a", "chat-b"}
    assert gap["chat-b"].utilization is None
    decisions = replay(history.timeline, STEP, timedelta(seconds=2 * STEP))
    # Idle at step 0 scales down; during the gap the missing pod counts as busy against a scale-down.
    assert decisions[0].action == "ScaleDown"
    assert decisions[1].action != "ScaleDown"


def test_a_gap_in_every_series_holds() -> None:
    history = build_timeline(SPEC, [gpu("chat-a", [50, None, 50]), gpu("chat-b", [50, None, 50])], times(3))
    assert [p.utilization for p in history.timeline.steps[1].pods] == [None, None]
    decision = replay(history.timeline, STEP, timedelta(seconds=2 * STEP))[1]
    assert decision.action == "Hold"
    assert "no GPU samples" in decision.reason


def test_nan_stays_nan_and_the_replay_holds_on_it() -> None:
    history = build_timeline(SPEC, [gpu("chat-a", [math.nan]), gpu("chat-b", [10])], times(1))
    assert math.isnan(step_pods(history, 0)["chat-a"].utilization or 0.0)
    decision = replay(history.timeline, STEP, timedelta(seconds=2 * STEP))[0]
    assert decision.action == "Hold"


def test_pods_come_and_go_with_their_series() -> None:
    series = [gpu("chat-a", [60] * 6), gpu("chat-b", [60, 60], start=2)]
    history = build_timeline(SPEC, series, times(6))
    present = [sorted(p.name for p in step.pods) for step in history.timeline.steps]
    assert present == [
        ["chat-a"],
        ["chat-a"],
        ["chat-a", "chat-b"],
        ["chat-a", "chat-b"],
        ["chat-a"],
        ["chat-a"],
    ]
    # There from the first step: Ready before it. Appearing later: Ready from its first sample.
    assert step_pods(history, 0)["chat-a"].ready_since is None
    assert step_pods(history, 2)["chat-b"].ready_since == at(2)


def test_steps_before_the_first_sample_are_left_out() -> None:
    history = build_timeline(SPEC, [gpu("chat-a", [60, 60], start=3)], times(5))
    assert history.first_data == at(3)
    assert [s.at for s in history.timeline.steps] == [at(3), at(4)]


def test_a_pod_missing_one_of_its_gpus_is_unknown() -> None:
    series = [gpu("chat-a", [90, 90], "0"), gpu("chat-a", [90, None], "1")]
    history = build_timeline(SPEC, series, times(2))
    assert step_pods(history, 0)["chat-a"].utilization == 90
    assert step_pods(history, 0)["chat-a"].gpus == 2
    assert step_pods(history, 1)["chat-a"].utilization is None


def test_the_metric_window_averages_as_a_pass_does_and_stamps_the_oldest_latest_point() -> None:
    spec = GPUWorkloadSpec.model_validate({**SPEC_BODY, "metric": {"window": "30s"}})
    history = build_timeline(spec, [gpu("chat-a", [30, 60, 90, None, 90])], times(5))
    pod = step_pods(history, 2)["chat-a"]
    assert pod.utilization == pytest.approx(60)  # steps 0..2 inside (t-30s, t]
    later = step_pods(history, 3)["chat-a"]
    # No point at step 3: the window still holds steps 1 and 2, as old as they are.
    assert later.utilization == pytest.approx(75)
    assert later.sampled_at == at(2)


def test_pods_sharing_a_gpu_are_marked_shared() -> None:
    shared = [
        GpuSeries("ml", "chat-a", "GPU-1", signal=[(at(0), 50.0)], signal_name=GPU_UTIL),
        GpuSeries("ml", "chat-b", "GPU-1", signal=[(at(0), 50.0)], signal_name=GPU_UTIL),
    ]
    history = build_timeline(SPEC, shared, times(1))
    assert all(p.shared for p in history.timeline.steps[0].pods)


# -- how many replicas ran ------------------------------------------------------------------------


def test_kube_state_metrics_counts_replicas_without_a_series_as_starting() -> None:
    counts = {at(0): 3, at(1): 3}
    history = build_timeline(
        SPEC,
        [gpu("chat-a", [90, 90]), gpu("chat-b", [90, 90])],
        times(2),
        replica_counts=counts,
        replica_metric="kube_deployment_spec_replicas",
    )
    assert history.timeline.replicas == 3
    pods = step_pods(history, 0)
    assert len(pods) == 3
    starting = next(p for p in pods.values() if not p.ready)
    assert (starting.phase, starting.utilization, starting.gpus) == ("Pending", None, 1)
    assert history.replicas_from == "kube_deployment_spec_replicas (kube-state-metrics)"


def test_kube_state_metrics_below_the_pods_seen_keeps_every_pod_that_held_gpus() -> None:
    history = build_timeline(
        SPEC,
        [gpu("chat-a", [20]), gpu("chat-b", [20])],
        times(1),
        replica_counts={at(0): 1},
        replica_metric="kube_deployment_spec_replicas",
    )
    assert sorted(step_pods(history, 0)) == ["chat-a", "chat-b"]
    assert history.timeline.replicas == 1  # what the Deployment asked for when the window opened


def test_without_kube_state_metrics_the_count_is_the_pods_with_series() -> None:
    history = build_timeline(
        SPEC,
        [gpu("chat-a", [20]), gpu("chat-b", [20])],
        times(1),
        replica_metric="kube_deployment_spec_replicas",
    )
    assert history.timeline.replicas == 2
    assert history.replicas_from == "the pods with a GPU series at each step"


def test_no_series_is_no_history() -> None:
    with pytest.raises(NoHistory, match="no GPU series"):
        build_timeline(SPEC, [], times(3))


def test_request_signals_join_their_steps_and_a_step_without_a_value_has_none() -> None:
    signals = Signals(
        per_pod={"waiting": {"chat-a": {at(0): 12.0, at(2): 3.0}}},
        scalars={"wakeUp": {at(1): 0.5}},
    )
    history = build_timeline(SPEC, [gpu("chat-a", [60] * 3)], times(3), signals=signals)
    steps = history.timeline.steps
    assert [s.pods[0].values for s in steps] == [{"waiting": 12.0}, {}, {"waiting": 3.0}]
    assert [s.scalars for s in steps] == [{}, {"wakeUp": 0.5}, {}]
