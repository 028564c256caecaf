"""GPUNodePool documents → the API's model → the planner's pool policies (runtime.mapping), and
what the planner does with them: which nodes a pool holds and what they cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from rightsizer.core.budgets import NodeBudget
from rightsizer.core.cost import PricingModel, RunningCosts, WorkloadUsage, workload_cost
from rightsizer.core.errors import InvalidPool
from rightsizer.core.pools import assign_pools, node_cost, node_price
from rightsizer.core.snapshot import Taint
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.mapping import read_pool, read_pools
from rightsizer.runtime.settings import PricingDefaults
from tests.unit.planner_builders import gpu_node, gpu_pool, kube_list

pytestmark = pytest.mark.unit


def test_full_pool_document_is_read() -> None:
    document = gpu_pool(
        "a100",
        selector={"rightsizer.io/pool": "a100"},
        gpuModel="NVIDIA-A100-SXM4-80GB",
        gpusPerNode=8,
        minNodes=1,
        maxNodes=10,
        consolidationPolicy="WhenEmpty",
        consolidateAfter="1h30m",
        disruption={
            "budgets": [{"nodes": "20%"}, {"nodes": "0", "schedule": "0 9 * * 1-5", "duration": "8h"}],
            "makeBeforeBreak": "Always",
        },
        allowTrainingDisruption=True,
        replacementTypes=[
            {
                "instanceType": "a100-x2",
                "gpuModel": "NVIDIA-A100-SXM4-80GB",
                "gpusPerNode": 2,
                "pricePerNodeHour": 6.5,
            }
        ],
        provider={"type": "kwok"},
        startupGracePeriod="3m",
        checkpointTimeout="2m",
        gangLabels=["example.com/gang"],
        consolidateWhenActivityUnknown=True,
        overheadPerHour="0.5",
    )
    (pool,) = read_pools([document])
    assert pool.name == "a100"
    assert pool.price_per_gpu_hour == Decimal("3.00") and pool.overhead_per_hour == Decimal("0.5")
    assert (pool.gpu_model, pool.gpus_per_node) == ("NVIDIA-A100-SXM4-80GB", 8)
    assert (pool.min_nodes, pool.max_nodes) == (1, 10)
    assert pool.consolidation_policy == "WhenEmpty"
    assert pool.consolidate_after == timedelta(hours=1, minutes=30)
    assert pool.budgets == (
        NodeBudget("20%"),
        NodeBudget("0", "0 9 * * 1-5", timedelta(hours=8)),
    )
    assert pool.allow_training_disruption and pool.consolidate_unknown_activity
    assert str(pool.make_before_break) == "Always"
    assert pool.replacement_types[0].price_per_node_hour == Decimal("6.5")
    assert pool.replacement_types[0].gpus_per_node == 2
    assert pool.provider == "kwok"
    assert (pool.startup_grace_period, pool.checkpoint_timeout) == (
        timedelta(minutes=3),
        timedelta(minutes=2),
    )
    assert pool.gang_labels == ("example.com/gang",)


def test_a_pool_carries_its_currency_and_the_shape_of_the_nodes_its_provider_adds() -> None:
    template = {
        "labels": {"topology.kubernetes.io/zone": "zone-b", "rightsizer.io/pool": "template"},
        "taints": [
            {"key": "gpu-only", "effect": "NoSchedule"},
            {"key": "t", "value": "v", "effect": "NoExecute"},
        ],
    }
    document = gpu_pool(
        "a100",
        selector={"rightsizer.io/pool": "a100"},
        currency="EUR",
        provider={"type": "kwok", "nodeTemplate": template},
    )
    (pool,) = read_pools([document])
    assert pool.currency == "EUR"
    # The nodeSelector and GPU model are always applied, over the template's labels.
    assert dict(pool.new_node.labels) == {
        "topology.kubernetes.io/zone": "zone-b",
        "rightsizer.io/pool": "a100",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    assert pool.new_node.taints == (Taint("gpu-only", "", "NoSchedule"), Taint("t", "v", "NoExecute"))
    (plain,) = read_pools([gpu_pool("l4", selector={"rightsizer.io/pool": "l4"})])
    assert plain.currency == "USD" and plain.new_node.taints == ()


def test_defaults_and_lists() -> None:
    listed = {
        "kind": "List",
        "items": [gpu_pool("a", selector={"x": "a"}), gpu_pool("b", selector={"x": "b"})],
    }
    a, b = read_pools([listed, None])
    # The API's default budget is Karpenter's: 10% of the pool's nodes.
    assert a.budgets == (NodeBudget("10%"),) and a.consolidation_policy == "WhenUnderutilized"
    assert a.consolidate_after == timedelta(minutes=5) and a.min_nodes == 0 and a.max_nodes is None
    assert str(a.make_before_break) == "InferenceOnly"
    assert b.name == "b"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "GPUWorkload"}, "GPUNodePool"),
        ({"apiVersion": "v1"}, "apiVersion"),
        ({"metadata": {}}, "metadata.name"),
        ({"spec": {"consolidationPolicy": "Sometimes"}}, "spec.consolidationPolicy"),
        ({"spec": {"consolidateAfter": "10 minutes"}}, "spec.consolidateAfter"),
        ({"spec": {"consolidateAfter": "Never"}}, "spec.consolidateAfter"),
        ({"spec": {"minNodes": -1}}, "spec.minNodes"),
        ({"spec": {"minNodes": 3, "maxNodes": 2}}, "maxNodes"),
        ({"spec": {"pricePerGpuHour": "cheap"}}, "spec.pricePerGpuHour"),
        ({"spec": {"gpusPerNode": 0}}, "spec.gpusPerNode"),
        ({"spec": {"nodeSelecter": {"x": "1"}}}, "spec.nodeSelecter"),
        ({"spec": {"disruption": {"budgets": [{"nodes": "150%"}]}}}, "nodes"),
        ({"spec": {"disruption": {"budgets": [{"nodes": "x"}]}}}, "nodes"),
        ({"spec": {"disruption": {"budgets": [{"nodes": "1", "schedule": "@daily"}]}}}, "together"),
        (
            {
                "spec": {
                    "disruption": {"budgets": [{"nodes": "1", "schedule": "61 * * * *", "duration": "1h"}]}
                }
            },
            r"spec\.disruption\.budgets\.0\.schedule: invalid cron schedule",
        ),
        ({"spec": {"disruption": {"makeBeforeBreak": "Sometimes"}}}, "makeBeforeBreak"),
        ({"spec": {"replacementTypes": [{"instanceType": "x"}]}}, "pricePerNodeHour"),
    ],
)
def test_bad_pool_documents_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    document = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"})
    spec = change.pop("spec", {})
    document.update(change)
    document["spec"].update(spec)
    with pytest.raises(InvalidPool, match=message):
        read_pools([document])


def test_a_pools_stored_status_never_makes_it_unreadable() -> None:
    document = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"})
    document["status"] = {"conditions": [{"type": "Ready", "status": "Maybe"}], "nodes": "many"}
    assert read_pool(document).name == "a100"


@pytest.mark.parametrize("text", [45, "1us", "-5m", "", "10"])
def test_a_stored_duration_the_api_server_would_refuse_is_refused_with_its_field(text: object) -> None:
    document = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, scaleDownAfter=text)
    with pytest.raises(InvalidPool, match=r"spec\.scaleDownAfter"):
        read_pool(document)


def test_an_empty_node_waits_the_scale_down_after_its_pool_sets() -> None:
    document = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, scaleDownAfter="90s")
    assert read_pool(document).scale_down_after == timedelta(seconds=90)
    assert read_pool(gpu_pool("a100", selector={"x": "1"})).scale_down_after == timedelta(minutes=10)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidPool, match="share a name"):
        read_pools([gpu_pool("a", selector={"x": "1"}), gpu_pool("a", selector={"x": "2"})])


def test_a_workload_filling_a_node_costs_what_the_pool_says_the_node_costs() -> None:
    """One cost model: the pool's cost of a node counts its CPU cores and its GPUs' energy as a
    workload's cost does, so a workload holding all of a node costs the pool's price of it."""
    spec = {
        "cpuCorePricePerHour": "0.05",
        "energyPricePerKwh": "0.2",
        "wattsPerGpu": 400,
        "pue": "1.5",
        "overheadPerHour": "0.8",
    }
    (pool,) = read_pools([gpu_pool("a", selector={"x": "1"}, price_per_gpu_hour="3", **spec)])
    node = snapshot_from_document(kube_list(gpu_node("a1", cpu="96"))).nodes[0]
    pricing = PricingModel(
        gpu_hour=Decimal(3),
        cpu_core_hour=Decimal("0.05"),
        energy_kwh=Decimal("0.2"),
        rated_watts_per_gpu=Decimal(400),
        pue=Decimal("1.5"),
        overhead_per_gpu_hour=Decimal("0.1"),
    )
    filled = workload_cost(pricing, WorkloadUsage(Decimal(8), Decimal(8), cpu_cores=Decimal(96)))
    # 8 × 3 + 0.8 overhead + 96 cores × 0.05 + 8 × 400 W × 1.5 / 1000 × 0.2 per kWh
    assert node_cost(node, pool) == filled.per_hour == Decimal("30.56")
    # What removing the node saves, and what a replacement shape is compared with, is its price.
    assert node_price(node, pool) == Decimal("24.8")


def test_a_pool_without_watts_per_gpu_draws_the_operators_default_as_its_workloads_do() -> None:
    document = gpu_pool("a", selector={"x": "1"}, energyPricePerKwh="1")
    assert read_pool(document, PricingDefaults(gpu_watts=Decimal(250))).running == RunningCosts(
        energy_kwh=Decimal(1), rated_watts_per_gpu=Decimal(250)
    )


def test_a_node_selected_by_two_pools_joins_neither_and_both_are_told() -> None:
    nodes = snapshot_from_document(
        kube_list(
            gpu_node("a1"),
            gpu_node("a2", labels={"tier": "gold"}),
            gpu_node("x1", labels={"rightsizer.io/pool": "x"}),
        )
    ).nodes
    pools = read_pools(
        [
            gpu_pool("b-gold", selector={"tier": "gold"}),
            gpu_pool("a-all", selector={"rightsizer.io/pool": "a100"}),
        ]
    )
    assignment = assign_pools(nodes, pools)
    assert assignment.node_pool == {"a1": "a-all"}
    assert assignment.contested == {"a2": ("a-all", "b-gold")}
    assert assignment.pool_of("a2") is None
    assert assignment.overlaps("a-all") == {"b-gold": ("a2",)}
    assert assignment.overlaps("b-gold") == {"a-all": ("a2",)}


def test_pools_with_disjoint_selectors_have_no_overlaps() -> None:
    nodes = snapshot_from_document(
        kube_list(gpu_node("a1"), gpu_node("x1", labels={"rightsizer.io/pool": "x"}))
    ).nodes
    pools = read_pools(
        [
            gpu_pool("a", selector={"rightsizer.io/pool": "a100"}),
            gpu_pool("x", selector={"rightsizer.io/pool": "x"}),
        ]
    )
    assignment = assign_pools(nodes, pools)
    assert assignment.node_pool == {"a1": "a", "x1": "x"}
    assert assignment.contested == {} and assignment.overlaps("a") == {}


def test_pool_prices() -> None:
    node = snapshot_from_document(kube_list(gpu_node("a1"))).nodes[0]
    per_gpu, per_node = read_pools(
        [
            gpu_pool("g", selector={"x": "1"}, price_per_gpu_hour="2.5", overheadPerHour="0.5"),
            gpu_pool("n", selector={"x": "2"}, price_per_gpu_hour=None, pricePerNodeHour="19.99"),
        ]
    )
    assert node_price(node, per_gpu) == Decimal("20.5")
    assert node_price(node, per_node) == Decimal("19.99")
    assert node_price(node, None) == Decimal("24.00")


def test_a_karpenter_pool_without_selector_or_price_takes_its_nodepools_nodes_at_their_labelled_price() -> (
    None
):
    karpenter = {"karpenter.sh/nodepool": "gpu-a100"}
    nodes = snapshot_from_document(
        kube_list(
            gpu_node("k1", labels={**karpenter, "eks-node-viewer/instance-price": "40.970000"}),
            gpu_node("k2", labels={**karpenter, "eks-node-viewer/instance-price": "not-a-price"}),
            gpu_node("k3", labels={**karpenter, "eks-node-viewer/instance-price": "-1"}),
            gpu_node("other", labels={"karpenter.sh/nodepool": "gpu-h100"}),
        )
    ).nodes
    (pool,) = read_pools(
        [
            {
                "apiVersion": "rightsizer.io/v1alpha1",
                "kind": "GPUNodePool",
                "metadata": {"name": "a100"},
                "spec": {
                    "provider": {"type": "karpenter", "nodePool": "gpu-a100"},
                    "gpuModel": "NVIDIA-A100-SXM4-80GB",
                    "gpusPerNode": 8,
                    "overheadPerHour": "1",
                },
            }
        ]
    )
    assignment = assign_pools(nodes, [pool])
    assert assignment.node_pool == {"k1": "a100", "k2": "a100", "k3": "a100"}
    by_name = {n.name: n for n in nodes}
    assert node_price(by_name["k1"], pool) == Decimal("41.97")
    # A label that is not a price is not trusted: the default table's 8 × 3.00 for an A100-80GB.
    assert node_price(by_name["k2"], pool) == node_price(by_name["k3"], pool) == Decimal("25.00")


def test_a_pool_price_wins_over_the_labelled_instance_price() -> None:
    node = snapshot_from_document(
        kube_list(gpu_node("k1", labels={"x": "1", "eks-node-viewer/instance-price": "40.97"}))
    ).nodes[0]
    (pool,) = read_pools([gpu_pool("g", selector={"x": "1"}, price_per_gpu_hour="2")])
    assert node_price(node, pool) == Decimal("16")
    assert node_price(node, None) == Decimal("40.97")
