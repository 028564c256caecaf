"""A replay of what the real operator recorded decides what the operator decided, step by step."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from rightsizer.cli.main import main
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_workload

pytestmark = pytest.mark.e2e

INTERVAL = 3


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return tmp_path / "decisions.jsonl"


@pytest.fixture
def operator(cluster: Cluster, namespace: str, recording: Path) -> Iterator[OperatorProcess]:
    with OperatorProcess.start(
        cluster.kubeconfig,
        namespace,
        cluster.prometheus_url,
        interval=INTERVAL,
        extra_args=["--record-decisions", str(recording)],
    ) as proc:
        yield proc


def test_a_replay_of_a_recorded_run_decides_what_the_operator_decided(
    world: World, gpu_util: GpuUtilization, operator: OperatorProcess, recording: Path
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 6}}
    world.cluster.apply(gpu_workload("chat", "chat", maxReplicas=4, behavior=behavior), ns)
    wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("chat"))
    gpu_util.set(ns, 15, selector={"app": "chat"})
    wait_for(lambda: world.replicas("chat") == 1, timeout=90, describe=lambda: world.describe("chat"))

    workload = f"{ns}/chat"
    recorded = [json.loads(line) for line in recording.read_text().splitlines()]
    recorded = [r for r in recorded if r["workload"] == workload]
    assert len(recorded) >= 3

    out = io.StringIO()
    args = ["backtest", "--input", str(recording), "--workload", workload, "--output", "json"]
    with redirect_stdout(out):
        assert main([*args, "--interval", str(INTERVAL)]) == 0
    replayed = json.loads(out.getvalue())["decisions"]
    # A pass may still have been writing a line while the file was read: compare what both have.
    pairs = list(zip(recorded, replayed, strict=False))
    assert len(pairs) >= 3
    for record, decision in pairs:
        expected = record["decision"]
        assert (decision["replicas"], decision["action"], decision["reason"]) == (
            expected["replicas"],
            expected["action"],
            expected["reason"],
        ), f"at {decision['at']}"
    actions = {d["action"] for d in replayed}
    assert {"ScaleUp", "ScaleDown"} <= actions, actions
