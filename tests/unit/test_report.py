"""The report's arithmetic: GPUs allocated vs busy per workload and pool, idle cost, savings."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import pytest

from rightsizer.adapters.cluster_snapshot import ClusterState
from rightsizer.cli import report as report_cli
from rightsizer.cli.report import render_table
from rightsizer.core.pools import PoolPolicy, assign_pools
from rightsizer.core.report import WORKLOAD_ANNOTATION, build_report, savings
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime import wiring
from rightsizer.runtime.mapping import read_pools
from rightsizer.runtime.settings import PricingDefaults

pytestmark = pytest.mark.unit


def node(name: str, gpus: int) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {"rightsizer.io/pool": "a100"}},
        "status": {"allocatable": {"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)}},
    }


def pod(name: str, node_name: str, gpus: int, workload: str | None) -> dict[str, Any]:
    annotations = {WORKLOAD_ANNOTATION: workload} if workload else {}
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "annotations": annotations},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running"},
    }


POOL = {
    "kind": "GPUNodePool",
    "metadata": {"name": "a100"},
    "spec": {
        "nodeSelector": {"rightsizer.io/pool": "a100"},
        "gpuModel": "NVIDIA-A100-SXM4-80GB",
        "gpusPerNode": 8,
        "pricePerGpuHour": 3,
    },
}


def workload(name: str, efficiency: float, per_hour: float) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": name},
        "spec": {"workloadType": "Inference", "mode": "Enforce"},
        "status": {
            "replicas": {"current": 2},
            "utilization": {"aggregate": efficiency * 100},
            "cost": {"currency": "USD", "perHour": per_hour, "toDate": 1.5, "gpuEfficiency": efficiency},
        },
    }


def test_busy_gpus_follow_efficiency_and_idle_cost_is_the_unbusy_rest() -> None:
    snap = snapshot_from_document(
        {
            "kind": "List",
            "items": [
                node("n1", 8),
                node("n2", 8),
                pod("chat-1", "n1", 2, "chat"),
                pod("chat-2", "n2", 2, "chat"),
                pod("stray", "n2", 1, None),
            ],
        }
    )
    report = build_report(snap, [workload("chat", 0.25, 12.0)], assign_pools(snap.nodes, read_pools([POOL])))
    (row,) = report.workloads
    assert row.gpus_allocated == 4
    assert row.gpus_busy == Decimal("1.00")
    (pool,) = report.pools
    assert (pool.nodes, pool.gpus_allocatable, pool.gpus_requested) == (2, 16, 5)
    assert pool.cost_per_hour == 48  # 16 GPUs x 3.00
    # The stray pod's activity is measured by no GPUWorkload: busy, as the pool's status counts it.
    assert pool.gpus_busy == Decimal("2.00")
    assert pool.idle_cost_per_hour == Decimal("42.0000")  # 14 unbusy GPUs x 3.00
    assert report.to_json()["totals"]["costPerHour"] == 48.0


def test_idle_cost_prices_each_node_as_the_pool_status_does() -> None:
    # One node price for an 8-GPU and a 4-GPU node: an idle GPU of the smaller node costs twice as
    # much. A pool-wide average per GPU would say 10 idle x 4.00 = 40.
    spec = {k: v for k, v in POOL["spec"].items() if k != "pricePerGpuHour"}
    per_node = {**POOL, "spec": {**spec, "pricePerNodeHour": 24}}
    snap = snapshot_from_document(
        {
            "kind": "List",
            "items": [
                node("n1", 8),
                node("n2", 4),
                pod("chat-1", "n1", 2, "chat"),
                pod("chat-2", "n2", 2, "chat"),
            ],
        }
    )
    pools = assign_pools(snap.nodes, read_pools([per_node]))
    (pool,) = build_report(snap, [workload("chat", 0.5, 12.0)], pools).pools
    # Half of each pod's two GPUs busy: 7 idle x 24/8 + 3 idle x 24/4.
    assert pool.idle_cost_per_hour == Decimal("39.0000")


def test_a_pools_cost_counts_its_nodes_cpu_cores_and_gpu_energy_as_workload_cost_does() -> None:
    priced = {**POOL, "spec": {**POOL["spec"], "cpuCorePricePerHour": "0.01", "energyPricePerKwh": "0.5"}}
    snap = snapshot_from_document({"kind": "List", "items": [node("n1", 8)]})
    pools = assign_pools(snap.nodes, read_pools([priced], PricingDefaults(gpu_watts=Decimal(250))))
    (pool,) = build_report(snap, [], pools).pools
    # 8 x 3.00 + 96 cores x 0.01 + 8 x 250 W x PUE 1 / 1000 x 0.50 per kWh
    assert pool.cost_per_hour == Decimal("25.96")
    assert pool.idle_cost_per_hour == Decimal("24.0000")  # the idle GPUs' price


def test_savings_compare_two_reports() -> None:
    before = {"totals": {"costPerHour": 100.0, "idleCostPerHour": 80.0, "nodes": 10}}
    after = {"totals": {"costPerHour": 60.0, "idleCostPerHour": 30.0, "nodes": 6}}
    s = savings(before, after)
    assert s["savedPerHour"] == 40.0 and s["savedPercent"] == 40.0
    assert (s["nodesBefore"], s["nodesAfter"]) == (10, 6)


def test_a_stored_cost_that_is_not_a_number_is_unknown_never_zero() -> None:
    snap = snapshot_from_document({"kind": "List", "items": [node("n1", 8), pod("chat-1", "n1", 2, "chat")]})
    broken = workload("chat", 0.5, 12.0)
    broken["status"]["cost"].update(perHour="NaN", toDate=True, gpuEfficiency="lots")
    fresh = {"metadata": {"namespace": "ml", "name": "new"}, "spec": {}, "status": {}}
    report = build_report(snap, [broken, fresh], assign_pools(snap.nodes, read_pools([POOL])))
    chat, new = report.workloads
    assert (chat.cost_per_hour, chat.cost_to_date, chat.gpus_busy) == (None, None, None)
    assert (new.cost_per_hour, new.cost_to_date) == (0, 0)  # nothing written yet: nothing accrued
    assert report.to_json()["totals"]["workloadCostPerHour"] is None
    s = savings({"totals": {"workloadCostPerHour": 5.0}}, report.to_json())
    assert (s["workloadCostPerHourBefore"], s["workloadCostPerHourAfter"]) == (5.0, None)
    assert "Workloads: 5.00/h → unknown/h" in render_table(report, {"totals": {"workloadCostPerHour": 5.0}})


class _Reader:
    """The cluster the report reads: one A100 node of POOL, through the pool reader it is given."""

    def __init__(self, api: object, read_pool: Callable[[Mapping[str, Any]], PoolPolicy]) -> None:
        self.read_pool = read_pool

    def read(self) -> ClusterState:
        priced = {**POOL, "spec": {**POOL["spec"], "energyPricePerKwh": "0.5"}}
        return ClusterState(
            snapshot=snapshot_from_document({"kind": "List", "items": [node("n1", 8)]}),
            pools=(self.read_pool(priced),),
            pool_documents={"a100": priced},
            pool_errors={},
        )

    def workload_documents(self) -> list[dict[str, Any]]:
        return []


def test_report_prices_pools_with_the_operators_pricing_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pool sets no wattsPerGpu: the operator prices its energy at its default watts, so must the report.
    monkeypatch.setenv("RIGHTSIZER_PRICING__GPU_WATTS", "1000")
    monkeypatch.setattr(wiring, "ClusterReader", _Reader)
    monkeypatch.setattr(report_cli, "api_client", lambda kubeconfig: object())
    args = argparse.Namespace(kubeconfig=None, output="json", baseline=None)
    assert report_cli.run(args) == 0
    (pool,) = json.loads(capsys.readouterr().out)["pools"]
    # 8 GPUs x 3.00 + 8 x 1000 W x PUE 1 / 1000 x 0.50 per kWh
    assert pool["cost_per_hour"] == 28.0


def test_report_refuses_settings_the_operator_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIGHTSIZER_PRICING__GPU_WATTS", "-1")
    args = argparse.Namespace(kubeconfig=None, output="json", baseline=None)
    assert report_cli.run(args) == 2
    assert "pricing.gpu_watts (RIGHTSIZER_PRICING__GPU_WATTS)" in capsys.readouterr().err
