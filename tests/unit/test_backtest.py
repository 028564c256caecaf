"""`rightsizer backtest`: a timeline replayed through the operator's own decision step."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rightsizer.cli.main import main
from rightsizer.devcluster.memory_cluster import T0, MemoryCluster
from rightsizer.runtime.backtest import parse_timeline, replay
from rightsizer.runtime.decision_record import timeline_from_records

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
    "workloadType": "Inference",
    "mode": "Recommend",  # replayed as Enforce all the same
    "minReplicas": 1,
    "maxReplicas": 6,
    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
}


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def pods(*utils: float | None, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"chat-{i}", "ready": True, "utilization": u, **extra} for i, u in enumerate(utils)]


def backtest(
    tmp_path: Path, document: Any, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    path = tmp_path / "timeline.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    code = main(["backtest", "--input", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_timeline_is_replayed_acting_as_enforce(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timeline = {
        "spec": SPEC,
        "replicas": 2,
        "steps": [
            {"at": at(0), "pods": pods(90, 90)},
            {"at": at(30), "pods": pods(60, 60, 60)},
            {"at": at(60), "pods": pods(10, 10, 10)},
            {"at": at(90), "pods": pods(10, None)},
        ],
    }
    code, out, _ = backtest(tmp_path, timeline, "--output", "json", capsys=capsys)
    assert code == 0
    decisions = json.loads(out)["decisions"]
    assert [(d["replicas"], d["action"]) for d in decisions] == [
        (3, "ScaleUp"),
        (3, "NoChange"),
        (1, "ScaleDown"),
        (1, "Hold"),  # one of the pods has no sample: never a scale-down on missing data
    ]
    assert decisions[0] == {"at": at(0), "replicas": 3, "action": "ScaleUp", "reason": decisions[0]["reason"]}
    assert "ceil(2×90/60)=3" in decisions[0]["reason"]


def test_the_summary_compares_gpu_hours_cost_and_time_above_target_with_what_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {**SPEC, "pricing": {"pricePerGpuHour": 3, "currency": "USD"}}
    timeline = {
        "spec": spec,
        "replicas": 2,
        "steps": [
            {"at": at(0), "pods": pods(90, 90)},  # 90% > 66% (target and tolerance): above target
            {"at": at(30), "pods": pods(60, 60, 60)},
            {"at": at(60), "pods": pods(10, 10, 10)},
            {"at": at(90), "pods": pods(10, 10)},
        ],
    }
    chart = tmp_path / "chart.html"
    code, out, _ = backtest(tmp_path, timeline, "--output", "json", "--chart", str(chart), capsys=capsys)
    assert code == 0
    summary = json.loads(out)["summary"]
    # Ran 2+3+3+2 GPU-steps of 30 s; the replay 3+3+1+1 (its load of 2x90% on 3 replicas is 60%).
    assert summary == {
        "gpuHoursRan": 0.083,
        "gpuHoursReplayed": 0.067,
        "minutesAboveTargetRan": 0.5,
        "minutesAboveTargetReplayed": 0.0,
        "costSaved": 0.05,
        "currency": "USD",
    }
    assert "<svg" in chart.read_text() and "replayed" in chart.read_text()


def test_request_signals_replay_from_values_and_scalars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = {
        "type": "Pods",
        "name": "requestsWaiting",
        "query": "avg by (namespace, pod) (vllm:num_requests_waiting)",
        "target": {"type": "AverageValue", "averageValue": 5},
    }
    spec = {
        **SPEC,
        "metrics": [{"type": "Gpu", "target": {"type": "Utilization", "averageUtilization": 60}}, waiting],
    }
    timeline = {
        "spec": spec,
        "replicas": 2,
        "steps": [{"at": at(0), "pods": pods(60, 60, values={"requestsWaiting": 12})}],
    }
    code, out, _ = backtest(tmp_path, timeline, "--output", "csv", capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "at,replicas,action,reason"
    assert lines[1].startswith(f"{at(0)},5,ScaleUp,largest of 2 signals: requestsWaiting → 5")


def test_a_pod_on_a_shared_gpu_replays_as_the_operator_held_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [
        {
            "at": at(0),
            "pods": [*pods(10, 10), {"name": "chat-2", "ready": True, "utilization": 10, "shared": True}],
        }
    ]
    code, out, _ = backtest(
        tmp_path, {"spec": SPEC, "replicas": 3, "steps": steps}, "--output", "json", capsys=capsys
    )
    assert code == 0
    (decision,) = json.loads(out)["decisions"]
    assert (decision["replicas"], decision["action"]) == (3, "Hold")
    assert "SharedGpu" in decision["reason"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (
            {"spec": SPEC, "replicas": 2, "steps": [{"at": at(0), "pods": pods("busy")}]},
            "steps.0.pods.0.utilization",
        ),
        ({"spec": SPEC, "replicas": -1, "steps": [{"at": at(0)}]}, "replicas"),
        ({"spec": SPEC, "replicas": 1, "steps": []}, "steps"),
        ({"spec": SPEC, "replicas": 1, "steps": [{"at": "2026-11-25T12:00:00"}]}, "steps.0.at"),
        ({"spec": {**SPEC, "maxReplicas": 0}, "replicas": 1, "steps": [{"at": at(0)}]}, "spec.maxReplicas"),
        ({"spec": SPEC, "replicas": 1, "steps": [{"at": at(30)}, {"at": at(0)}]}, "steps.1.at"),
        (
            {"spec": {**SPEC, "workloadType": "Training"}, "replicas": 1, "steps": [{"at": at(0)}]},
            "spec.workloadType",
        ),
        (
            {
                "spec": SPEC,
                "replicas": 1,
                "steps": [{"at": at(0), "pods": [{"name": "a", "ready": True, "util": 5}]}],
            },
            "steps.0.pods.0.util",
        ),
    ],
    ids=["utilization", "replicas", "no-steps", "naive-time", "spec", "order", "training", "unknown-field"],
)
def test_bad_input_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: Mapping[str, Any], field: str
) -> None:
    code, out, err = backtest(tmp_path, dict(document), "--output", "json", capsys=capsys)
    assert code == 2
    assert out == ""
    assert field in err


def test_not_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = backtest(tmp_path, "{not json", capsys=capsys)
    assert code == 2 and "neither JSON nor JSON lines" in err


utilisations = st.lists(st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), min_size=3, max_size=14)


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(1, 6),
    utils=utilisations,
    window=st.sampled_from([0, 60, 300]),
    tolerance=st.sampled_from([0, 0.1, 0.3]),
)
def test_a_replay_of_what_the_operator_recorded_decides_what_it_decided(
    start: int, utils: list[float | None], window: int, tolerance: float
) -> None:
    records: list[Mapping[str, Any]] = []
    c = MemoryCluster(recorder=records.append)
    c.deployment("ml", "chat", start, util=None)
    behavior = {"scaleDown": {"stabilizationWindowSeconds": window}, "tolerance": tolerance}
    c.workload("ml", "chat", maxReplicas=6, behavior=behavior)
    decided = []
    for util in utils:
        c.set_pods("ml", "chat", c.replicas("ml", "chat"), util=util)
        result = c.reconcile("ml", "chat")
        decided.append((result.status["lastDecision"]["action"], c.replicas("ml", "chat")))
        c.now += timedelta(seconds=30)
    document = timeline_from_records(records, "ml/chat")

    replayed = replay(parse_timeline(document), 30, timedelta(seconds=60))
    assert [(d.action, d.replicas) for d in replayed] == decided
    assert [d.reason for d in replayed] == [r["decision"]["reason"] for r in records]
