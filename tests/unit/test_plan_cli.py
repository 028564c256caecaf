"""`rightsizer plan`: output shapes and exit codes (--live on the real cluster: tests/e2e)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from rightsizer.cli import plan as plan_cli
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list, pod

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data" / "snapshots"
SNAPSHOT = DATA / "fragmented-20-nodes.json"
POOLS = DATA / "fragmented-20-nodes.pools.json"
NOW = "2026-06-01T00:00:00Z"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rightsizer")
    plan_cli.register(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv])
    return int(args.func(args))


def write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_json_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("--snapshot", str(SNAPSHOT), "--pools", str(POOLS), "--output", "json", "--now", NOW) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"summary", "actions", "skipped", "recommendations"}
    summary = document["summary"]
    assert set(summary) == {
        "nodesBefore",
        "nodesAfter",
        "gpuNodesBefore",
        "gpuNodesAfter",
        "podsMoved",
        "podsUnplaceable",
        "costPerHourBefore",
        "costPerHourAfter",
        "planSeconds",
    }
    assert summary["nodesBefore"] == 20 and summary["nodesAfter"] < 20
    assert isinstance(summary["planSeconds"], float) and summary["planSeconds"] >= 0
    assert summary["costPerHourAfter"] < summary["costPerHourBefore"]
    assert summary["podsMoved"] == sum(a["type"] == "evict" for a in document["actions"])
    assert {a["type"] for a in document["actions"]} == {"cordon", "evict", "removeNode"}
    for action in document["actions"]:
        assert {"type", "node", "pod", "toNode", "reason"} <= set(action)
        assert (action["pod"] is not None) == (action["type"] == "evict")
        if action["type"] == "evict":
            assert "/" in action["pod"] and action["toNode"]
    assert all(s["reason"] for s in document["skipped"])


def test_text_output_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("--snapshot", str(SNAPSHOT), "--pools", str(POOLS), "--now", NOW) == 0
    out = capsys.readouterr().out
    assert "Consolidation plan as of 2026-06-01T00:00:00+00:00" in out
    assert "cost per hour" in out and "GPU nodes" in out
    assert "#   TYPE" in out and "TO NODE" in out and "removeNode" in out
    assert "SKIPPED" in out and "saves $" in out


def test_pools_may_be_yaml_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = write(tmp_path, "s.json", kube_list(gpu_node("a1"), gpu_node("a2"), pod("w-1", "a1", gpus=1)))
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        yaml.safe_dump_all(
            [
                gpu_pool(
                    "a100",
                    selector={"rightsizer.io/pool": "a100"},
                    price_per_gpu_hour="1.00",
                    disruption={"budgets": [{"nodes": "1"}]},
                ),
            ]
        )
    )
    assert cli("--snapshot", snapshot, "--pools", str(pools), "--output", "json", "--now", NOW) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["costPerHourBefore"], summary["costPerHourAfter"]) == (16.0, 8.0)


def test_activity_file_feeds_recommendations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = write(
        tmp_path,
        "s.json",
        kube_list(
            gpu_node("a1"),
            pod("train-1", "a1", gpus=8, labels={"rightsizer.io/workload-type": "Training"}),
        ),
    )
    activity = write(tmp_path, "a.json", {"default/train-1": 0.5})
    assert cli("--snapshot", snapshot, "--activity", activity, "--output", "json", "--now", NOW) == 0
    recommendations = json.loads(capsys.readouterr().out)["recommendations"]
    assert recommendations[0]["node"] == "a1" and recommendations[0]["savingsPerHour"] == 24.0


@pytest.mark.parametrize(
    ("snapshot", "extra", "message"),
    [
        ("{not json", [], "not JSON"),
        ({"kind": "Pod", "metadata": {"name": "x"}}, [], "List"),
        (kube_list(pod("w-1", "a1", cpu="two")), [], "invalid Kubernetes quantity"),
        (kube_list(), ["--now", "yesterday"], "--now"),
        (kube_list(), ["--pools", "/nonexistent/pools.yaml"], "cannot read pools file"),
        (kube_list(), ["--activity", "/nonexistent/a.json"], "cannot read activity file"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    snapshot: object,
    extra: list[str],
    message: str,
) -> None:
    assert cli("--snapshot", write(tmp_path, "s.json", snapshot), *extra) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ("kind: [unclosed", "not YAML/JSON"),
        ("kind: Deployment\nmetadata: {name: x}\n", "GPUNodePool"),
        (json.dumps(gpu_pool("a", selector={"x": "1"}, minNodes="two")), "minNodes"),
        ("kind: GPUNodePool\nmetadata: a100\n", "metadata must be an object"),
        # What the API server refuses, a pools file may not say either: one model, one validation.
        (json.dumps(gpu_pool("a", selector={"x": "1"}, gpusPerNode=None)), "spec.gpusPerNode"),
        (json.dumps(gpu_pool("a", selector={"x": "1"}, consolidateAfter="Never")), "spec.consolidateAfter"),
    ],
)
def test_bad_pools_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pools: str, message: str
) -> None:
    snapshot = write(tmp_path, "s.json", kube_list())
    assert cli("--snapshot", snapshot, "--pools", write(tmp_path, "p.yaml", pools)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("activity", [{"default/x": 150}, {"default/x": "busy"}, [1, 2]])
def test_bad_activity_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], activity: object) -> None:
    snapshot = write(tmp_path, "s.json", kube_list())
    assert cli("--snapshot", snapshot, "--activity", write(tmp_path, "a.json", activity)) == 2
    assert "activity" in capsys.readouterr().err


def test_missing_source_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli("--output", "json")
    assert exc.value.code == 2


def test_live_without_a_cluster_to_read_prints_no_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("--live", "--kubeconfig", str(tmp_path / "missing-kubeconfig")) == 1
    err = capsys.readouterr().err
    assert "the cluster could not be read" in err


def test_live_refuses_settings_the_operator_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It reads the cluster with the operator's settings (prices), so it refuses what the operator would.
    monkeypatch.setenv("RIGHTSIZER_PRICING__GPU_WATTS", "-1")
    assert cli("--live", "--kubeconfig", str(tmp_path / "missing-kubeconfig")) == 2
    assert "RIGHTSIZER_PRICING__GPU_WATTS" in capsys.readouterr().err


def test_options_reach_the_planner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = write(
        tmp_path,
        "s.json",
        kube_list(
            gpu_node("a1"),
            gpu_node("a2"),
            pod("w-1", "a1", gpus=4),
            pod("w-2", "a2", gpus=1, volumes=[{"name": "tmp", "emptyDir": {}}]),
        ),
    )
    assert cli("--snapshot", snapshot, "--output", "json", "--now", NOW) == 0
    assert "default/w-2" not in {a["pod"] for a in json.loads(capsys.readouterr().out)["actions"]}
    assert cli("--snapshot", snapshot, "--output", "json", "--now", NOW, "--allow-local-storage") == 0
    assert "default/w-2" in {a["pod"] for a in json.loads(capsys.readouterr().out)["actions"]}
