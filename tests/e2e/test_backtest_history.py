"""`rightsizer backtest --workload NS/NAME --since D` run as a user runs it, against the real API server
and a real Prometheus that scraped the fake DCGM exporter: the workload's own pods' past (a pod
since replaced included, a Deployment whose name merely starts the same left out) replayed through
the operator's decisions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.cluster import GpuUtilization, wait_for
from tests.support.world import World, gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

STEP = "3s"
WAITING = "vllm:num_requests_waiting"
WAITING_METRIC = {
    "type": "Pods",
    "name": "requestsWaiting",
    "query": f'avg by (namespace, pod) ({WAITING}{{namespace="{{{{namespace}}}}", pod=~"{{{{pods}}}}"}})',
    "target": {"type": "AverageValue", "averageValue": 5},
}
GPU_METRIC = {"type": "Gpu", "target": {"type": "Utilization", "averageUtilization": 60}}


def rightsizer(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("rightsizer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rightsizer.cli.main"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def has_series(world: World, pod: str, metric: str = "DCGM_FI_DEV_GPU_UTIL") -> bool:
    query = f'count({{__name__="{metric}", namespace="{world.namespace}", pod="{pod}"}})'
    rsp = requests.get(f"{world.cluster.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    return bool(rsp.json()["data"]["result"])


def samples_of(world: World, pod: str) -> int:
    """How many GPU utilisation samples Prometheus has of `pod` in the last minute (any GPU)."""
    query = f'max(count_over_time(DCGM_FI_DEV_GPU_UTIL{{namespace="{world.namespace}", pod="{pod}"}}[1m]))'
    rsp = requests.get(f"{world.cluster.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    result = rsp.json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def pods_of(world: World, app: str) -> list[str]:
    items = world.core.list_namespaced_pod(world.namespace, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in items if not p.metadata.deletion_timestamp)


def test_a_busy_workloads_history_replays_as_scale_ups_with_the_operators_reasons(
    world: World, gpu_util: GpuUtilization, tmp_path: Path
) -> None:
    ns = world.namespace
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    gpu_util.app_metrics(ns, {WAITING: 12}, selector={"app": "chat"})  # what a vLLM server exports
    # No operator runs: the history is the exporter's, the spec the GPUWorkload's.
    workload = gpu_workload("chat", "chat", mode="Recommend", maxReplicas=4)
    world.cluster.apply(workload, ns)
    # Another Deployment whose pods' names start with "chat-", idle: never part of chat's history.
    world.cluster.apply(gpu_deployment("chat-v2", 1), ns)
    gpu_util.set(ns, 5, selector={"app": "chat-v2"})
    world.wait_ready("chat-v2", 1)
    # One of chat's pods is replaced: its past is found by the Deployment's pod names, not the selector.
    replaced = pods_of(world, "chat")[0]
    # It has a past once Prometheus has scraped it across a few steps (a range query sees a series
    # only at the steps between its first sample and the staleness mark after its pod went).
    wait_for(lambda: samples_of(world, replaced) >= 4, timeout=60, describe=world.describe)
    world.core.delete_namespaced_pod(replaced, ns, grace_period_seconds=0)
    wait_for(lambda: len(pods_of(world, "chat")) == 2 and replaced not in pods_of(world, "chat"), timeout=60)
    new_pods = pods_of(world, "chat")
    wait_for(
        lambda: (
            all(has_series(world, p) for p in [*new_pods, *pods_of(world, "chat-v2")])
            and all(has_series(world, p, WAITING) for p in new_pods)
        ),
        timeout=60,
        describe=world.describe,
    )

    chart = tmp_path / "backtest.html"
    common = ["backtest", "--workload", f"{ns}/chat", "--since", "3m", "--step", STEP]
    common += ["--prometheus-url", world.cluster.prometheus_url, "--kubeconfig", world.cluster.kubeconfig]
    done = rightsizer(*common, "--output", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)

    history = document["history"]
    assert replaced in history["pods"], history
    assert set(new_pods) <= set(history["pods"]), history
    assert not [p for p in history["pods"] if p.startswith("chat-v2-")], history
    assert history["replicasFrom"] == "the pods with a GPU series at each step"  # no kube-state-metrics

    decisions = document["decisions"]
    assert any(d["action"] == "ScaleUp" for d in decisions), decisions
    # Two pods at 90% against 60%: the operator's own arithmetic and wording.
    reason = "util 90% > target 60% (+10% tolerance) → ceil(2×90/60)=3"
    assert any(d["reason"] == reason for d in decisions), decisions
    # Still busy at the end: never back to the 2 that ran (a step while the replaced pod overlapped
    # its successor may have asked for more).
    assert decisions[-1]["replicas"] >= 3, decisions[-1]
    summary = document["summary"]
    assert summary["minutesAboveTargetRan"] > 0, summary
    assert summary["gpuHoursReplayed"] > summary["gpuHoursRan"], summary

    text = rightsizer(*common, "--chart", str(chart))
    assert text.returncode == 0, text.stderr
    assert "replicas that ran: the pods with a GPU series at each step" in text.stdout
    assert "minutes above target:" in text.stdout
    assert "<svg" in chart.read_text()

    # The same history under a spec that also scales on requests waiting: 12 a pod against 5.
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**workload["spec"], "metrics": [GPU_METRIC, WAITING_METRIC]}))
    queued = rightsizer(*common, "--spec", str(spec), "--output", "json")
    assert queued.returncode == 0, queued.stderr
    reasons = [d["reason"] for d in json.loads(queued.stdout)["decisions"]]
    assert any("largest of 2 signals: requestsWaiting" in r for r in reasons), reasons


def test_history_that_cannot_be_read_exits_2_naming_the_problem(world: World) -> None:
    ns = world.namespace
    world.cluster.apply(gpu_workload("quiet", "quiet", mode="Recommend"), ns)
    kube = ["--kubeconfig", world.cluster.kubeconfig]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        down = rightsizer(
            "backtest", "--workload", f"{ns}/quiet", "--since", "1h", "--prometheus-url", closed, *kube
        )
    assert down.returncode == 2, down.stdout
    assert f"cannot reach {closed}" in down.stderr

    prometheus = ["--prometheus-url", world.cluster.prometheus_url, *kube]
    nothing = rightsizer("backtest", "--workload", f"{ns}/quiet", "--since", "10m", *prometheus)
    assert nothing.returncode == 2, nothing.stdout
    assert "no GPU series of the workload's pods in Prometheus over the last 10m" in nothing.stderr

    missing = rightsizer("backtest", "--workload", f"{ns}/absent", "--since", "10m", *prometheus)
    assert missing.returncode == 2, missing.stdout
    assert f"GPUWorkload {ns}/absent not found" in missing.stderr
