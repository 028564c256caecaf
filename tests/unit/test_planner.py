"""The plan as a whole: summary, costs, default pools, JSON shape, purity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from rightsizer.core.planner import PlanInput, plan
from rightsizer.core.pools import default_assignment, default_gpu_price, default_node_price
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import L4, cpu_node, gpu_node, gpu_pool, kube_list, pod, policies

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def sample() -> PlanInput:
    snapshot = snapshot_from_document(
        kube_list(
            gpu_node("a1"),
            gpu_node("a2"),
            gpu_node("l1", gpus=4, model=L4, cpu="48", memory="192Gi"),
            cpu_node("c1"),
            cpu_node("c2"),
            pod("w-1", "a1", gpus=4),
            pod("w-2", "a2", gpus=2),
            pod("web-1", "c1", cpu="2"),
            pod("bare-1", "l1", gpus=1, owner=None),
        )
    )
    pools = [
        gpu_pool(
            "a100", selector={"rightsizer.io/pool": "a100"}, disruption={"budgets": [{"nodes": "100%"}]}
        ),
        gpu_pool(
            "l4",
            selector={"rightsizer.io/pool": "l4"},
            price_per_gpu_hour="0.80",
            disruption={"budgets": [{"nodes": "100%"}]},
        ),
        gpu_pool(
            "cpu",
            selector={"rightsizer.io/pool": "cpu"},
            price_per_gpu_hour=None,
            gpusPerNode=0,
            pricePerNodeHour="1.28",
            disruption={"budgets": [{"nodes": "100%"}]},
        ),
    ]
    return PlanInput(snapshot=snapshot, now=NOW, pools=policies(pools))


def test_summary_counts_nodes_pods_and_cost() -> None:
    summary = plan(sample()).summary
    assert (summary.nodes_before, summary.nodes_after) == (5, 3)
    assert (summary.gpu_nodes_before, summary.gpu_nodes_after) == (3, 2)
    assert summary.pods_moved == 1
    assert summary.pods_unplaceable == 0
    assert summary.cost_per_hour_before == Decimal("24") * 2 + Decimal("3.20") + Decimal("1.28") * 2
    assert summary.cost_per_hour_after == Decimal("24") + Decimal("3.20") + Decimal("1.28")
    assert summary.plan_seconds is None


def test_plan_is_deterministic_and_pure() -> None:
    inputs = sample()
    assert plan(inputs) == plan(inputs)


def test_json_shape() -> None:
    document = json.loads(json.dumps(plan(sample()).timed(0.25).to_dict()))
    assert set(document) == {"summary", "actions", "skipped", "recommendations"}
    assert document["summary"] == {
        "nodesBefore": 5,
        "nodesAfter": 3,
        "gpuNodesBefore": 3,
        "gpuNodesAfter": 2,
        "podsMoved": 1,
        "podsUnplaceable": 0,
        "costPerHourBefore": 53.76,
        "costPerHourAfter": 28.48,
        "planSeconds": 0.25,
    }
    for action in document["actions"]:
        assert {"type", "node", "pod", "toNode", "reason"} <= set(action)
        assert action["reason"]
    evict = next(a for a in document["actions"] if a["type"] == "evict")
    assert evict == {
        "type": "evict",
        "node": "a2",
        "pod": "default/w-2",
        "toNode": "a1",
        "reason": "drain a2: fits on a1",
        "pool": "a100",
    }
    assert {
        "node": "l1",
        "pod": "default/bare-1",
        "reason": "no controller would recreate it (bare pod)",
    } in (document["skipped"])


def test_default_pools_group_by_gpu_model_and_instance_type() -> None:
    snapshot = snapshot_from_document(
        kube_list(
            gpu_node("a1"),
            gpu_node("l1", gpus=4, model=L4),
            cpu_node("c1"),
            cpu_node("cp", labels={"node-role.kubernetes.io/control-plane": ""}),
        )
    )
    assignment = default_assignment(snapshot.nodes)
    assert assignment.node_pool == {"a1": "NVIDIA-A100-SXM4-80GB", "l1": "NVIDIA-L4", "c1": "cpu-32"}
    assert assignment.pool_of("cp") is None


def test_without_pools_the_default_budget_and_prices_apply() -> None:
    snapshot = snapshot_from_document(kube_list(*(gpu_node(f"a{i}") for i in range(3)), cpu_node("c1")))
    result = plan(PlanInput(snapshot=snapshot, now=NOW))
    assert result.summary.cost_per_hour_before == Decimal("3.00") * 8 * 3 + Decimal("0.04") * 32
    assert result.summary.nodes_after == 2  # 10% of 3 A100 nodes rounds up to 1, plus the CPU node
    assert "control-plane" not in json.dumps(result.to_dict())


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("NVIDIA-A100-SXM4-80GB", "3.00"),
        ("NVIDIA-A100-SXM4-40GB", "2.50"),
        ("NVIDIA-H100-80GB-HBM3", "5.00"),
        ("NVIDIA-L4", "0.80"),
        ("NVIDIA-L40S", "1.50"),
        ("Tesla-T4", "0.35"),
        ("NVIDIA-A10G", "1.00"),
        ("Mystery-GPU", "2.00"),
        (None, "2.00"),
    ],
)
def test_default_gpu_prices(model: str | None, price: str) -> None:
    assert default_gpu_price(model) == Decimal(price)


def test_cpu_nodes_are_priced_per_core() -> None:
    node = snapshot_from_document(kube_list(cpu_node("c1", cpu="16"))).nodes[0]
    assert default_node_price(node) == Decimal("0.64")
