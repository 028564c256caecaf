"""Properties every plan must have, on random clusters, checked by an independent replay.

The replay applies the actions in order to the snapshot's requests and asserts that every move lands
on a node that exists, stays, admits the pod (selector, taints, GPU model) and has room after all
earlier moves; that no protected pod is ever evicted; that PDBs (per drained node), budgets and
minNodes hold; and that the plan never claims fewer nodes than a simple lower bound allows.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rightsizer.core.planner import Plan, PlanInput, plan
from rightsizer.core.quantity import parse_quantity
from tests.unit.planner_builders import L4, cpu_node, gpu_node, gpu_pool, kube_list, pdb, pod, policies

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PROTECTIONS = ("none",) * 30 + ("bare", "dnd", "daemon", "local", "training", "safe-to-evict-false")
TAINT = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(("a100", "l4", "cpu")), min_size=2, max_size=8))
    nodes: list[dict[str, Any]] = []
    free: dict[str, dict[str, int]] = {}
    for i, kind in enumerate(kinds):
        name = f"{kind}-{i}"
        labels = {"zone": draw(st.sampled_from(("a", "b")))}
        taints = [TAINT] if draw(st.integers(0, 5)) == 0 else None
        if kind == "a100":
            nodes.append(gpu_node(name, labels=labels, taints=taints))
            free[name] = {"gpu": 8, "cpu": 64, "pods": 110}
        elif kind == "l4":
            nodes.append(
                gpu_node(name, gpus=4, model=L4, cpu="48", memory="192Gi", labels=labels, taints=taints)
            )
            free[name] = {"gpu": 4, "cpu": 48, "pods": 110}
        else:
            nodes.append(cpu_node(name, cpu="16", memory="64Gi", labels=labels, taints=taints))
            free[name] = {"gpu": 0, "cpu": 16, "pods": 110}
    pods: list[dict[str, Any]] = []
    pdb_allowed = {f"app-{k}": draw(st.sampled_from((5, 1, 10, 0, 2))) for k in range(3)}
    for j in range(draw(st.integers(0, 30))):
        node = draw(st.sampled_from(nodes))
        name = node["metadata"]["name"]
        gpus = draw(st.sampled_from((0, 1, 2, 4))) if free[name]["gpu"] else 0
        cpu = draw(st.sampled_from((1, 2, 4)))
        if gpus > free[name]["gpu"] or cpu > free[name]["cpu"]:
            continue
        free[name]["gpu"] -= gpus
        free[name]["cpu"] -= cpu
        protection = draw(st.sampled_from(PROTECTIONS))
        app = f"app-{draw(st.integers(0, 4))}"
        kwargs: dict[str, Any] = {"gpus": gpus, "cpu": str(cpu), "memory": "2Gi", "labels": {"app": app}}
        if node["spec"].get("taints") or draw(st.booleans()):
            kwargs["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
        if draw(st.integers(0, 3)) == 0:
            kwargs["node_selector"] = {"zone": node["metadata"]["labels"]["zone"]}
        if protection == "bare":
            kwargs["owner"] = None
        elif protection == "dnd":
            kwargs["annotations"] = {"karpenter.sh/do-not-disrupt": "true"}
        elif protection == "safe-to-evict-false":
            kwargs["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
        elif protection == "daemon":
            kwargs["owner"] = "DaemonSet"
        elif protection == "local":
            kwargs["volumes"] = [{"name": "tmp", "emptyDir": {}}]
        elif protection == "training":
            kwargs["labels"] = {"app": app, "rightsizer.io/workload-type": "Training"}
        pods.append(pod(f"p-{j}", name, **kwargs))
    budgets = draw(st.sampled_from(("1", "2", "50%", "100%", "100%", "100%")))
    min_nodes = draw(st.sampled_from((0, 0, 0, 1, 2)))
    pool_spec = {"disruption": {"budgets": [{"nodes": budgets}]}, "minNodes": min_nodes}
    pool_docs = [
        gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **pool_spec),
        gpu_pool("l4", selector={"rightsizer.io/pool": "l4"}, price_per_gpu_hour="0.80", **pool_spec),
        gpu_pool(
            "cpu",
            selector={"rightsizer.io/pool": "cpu"},
            price_per_gpu_hour=None,
            gpusPerNode=0,
            pricePerNodeHour="1",
            **pool_spec,
        ),
    ]
    pdbs = [pdb(app, {"app": app}, allowed) for app, allowed in pdb_allowed.items()]
    return {
        "document": kube_list(*nodes, *pods, *pdbs),
        "pools": pool_docs,
        "budget": budgets,
        "min": min_nodes,
    }


def protected(item: dict[str, Any], pdb_allowed: dict[str, int]) -> bool:
    meta, spec = item["metadata"], item["spec"]
    annotations = meta.get("annotations", {})
    owners = meta.get("ownerReferences", [])
    return (
        not owners
        or owners[0]["kind"] == "DaemonSet"
        or annotations.get("karpenter.sh/do-not-disrupt") == "true"
        or annotations.get("cluster-autoscaler.kubernetes.io/safe-to-evict") == "false"
        or meta["labels"].get("rightsizer.io/workload-type") == "Training"
        or bool(spec.get("volumes"))
        or pdb_allowed.get(meta["labels"]["app"]) == 0
    )


def daemon(item: dict[str, Any]) -> bool:
    return bool(item["metadata"].get("ownerReferences", [{}])[0].get("kind") == "DaemonSet")


def requests(item: dict[str, Any]) -> Counter[str]:
    total: Counter[str] = Counter({"pods": 1})
    for name, value in item["spec"]["containers"][0]["resources"]["requests"].items():
        total[name] += int(parse_quantity(value) * (1000 if name == "cpu" else 1))
    return total


def capacity(node: dict[str, Any]) -> Counter[str]:
    return Counter(
        {
            k: int(parse_quantity(v) * (1000 if k == "cpu" else 1))
            for k, v in node["status"]["allocatable"].items()
        }
    )


def admits(node: dict[str, Any], item: dict[str, Any], origin: dict[str, Any]) -> bool:
    labels = node["metadata"]["labels"]
    selector = item["spec"].get("nodeSelector", {})
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    tolerated = bool(item["spec"].get("tolerations"))
    if node["spec"].get("taints") and not tolerated:
        return False
    model = labels.get("nvidia.com/gpu.product")
    return not requests(item)["nvidia.com/gpu"] or model == origin["metadata"]["labels"].get(
        "nvidia.com/gpu.product"
    )


def replay(case: dict[str, Any], result: Plan) -> None:
    document = case["document"]
    nodes = {i["metadata"]["name"]: i for i in document["items"] if i["kind"] == "Node"}
    pods = {f"default/{i['metadata']['name']}": i for i in document["items"] if i["kind"] == "Pod"}
    pdb_allowed = {
        i["metadata"]["name"]: i["status"]["disruptionsAllowed"]
        for i in document["items"]
        if i["kind"] == "PodDisruptionBudget"
    }
    used = {name: Counter[str]() for name in nodes}
    where: dict[str, str] = {}
    for key, item in pods.items():
        where[key] = item["spec"]["nodeName"]
        used[where[key]] += requests(item)
    removed = [a.node for a in result.actions if a.type == "removeNode"]
    assert len(set(removed)) == len(removed)
    evictions: Counter[str] = Counter()
    per_node: Counter[tuple[str, str]] = Counter()  # (drained node, app)
    for action in result.actions:
        if action.type != "evict":
            continue
        assert action.pod is not None and action.to_node is not None
        item = pods[action.pod]
        assert not protected(item, pdb_allowed), f"protected pod {action.pod} evicted"
        assert where[action.pod] == action.node, "evicted from a node it is not on"
        assert action.to_node in nodes and action.to_node not in removed, "moved to a node that goes away"
        target = nodes[action.to_node]
        assert admits(target, item, nodes[action.node]), f"{action.pod} may not run on {action.to_node}"
        used[action.node] -= requests(item)
        used[action.to_node] += requests(item)
        room = capacity(target)
        assert all(used[action.to_node][k] <= room[k] for k in used[action.to_node]), "no room left"
        where[action.pod] = action.to_node
        evictions[item["metadata"]["labels"]["app"]] += 1
        per_node[action.node, item["metadata"]["labels"]["app"]] += 1
    # Nodes are drained one at a time, each after the last one's replacements are available: a PDB
    # bounds what one node's drain evicts.
    for (drained, app), count in per_node.items():
        assert count <= pdb_allowed.get(app, count), f"PDB {app} exceeded draining {drained}"
    for name in removed:
        stranded = [
            k
            for k, n in where.items()
            if n == name and pods[k]["metadata"].get("ownerReferences", [{}])[0].get("kind") != "DaemonSet"
        ]
        assert not stranded, f"{name} removed with pods {stranded}"
    per_pool = Counter(nodes[n]["metadata"]["labels"]["rightsizer.io/pool"] for n in removed)
    size = Counter(n["metadata"]["labels"]["rightsizer.io/pool"] for n in nodes.values())
    for pool, count in per_pool.items():
        budget = case["budget"]
        limit = -(-size[pool] * int(budget[:-1]) // 100) if budget.endswith("%") else int(budget)
        assert count <= limit, f"budget of {pool} exceeded"
        assert size[pool] - count >= min(case["min"], size[pool]), f"minNodes of {pool} broken"
    # Lower bound: GPU pods keep their model, so each model needs ceil(GPUs requested / GPUs per node).
    for model, per_node in (("NVIDIA-A100-SXM4-80GB", 8), (L4, 4)):
        demand = sum(
            requests(pods[k])["nvidia.com/gpu"]
            for k, n in where.items()
            if nodes[n]["metadata"]["labels"].get("nvidia.com/gpu.product") == model and not daemon(pods[k])
        )
        kept = sum(
            1
            for n in nodes.values()
            if n["metadata"]["labels"].get("nvidia.com/gpu.product") == model
            and n["metadata"]["name"] not in removed
        )
        assert kept >= -(-demand // per_node)
    assert result.summary.nodes_after == len(nodes) - len(removed)
    assert result.summary.pods_moved == sum(evictions.values())
    assert result.summary.nodes_after >= sum(
        1
        for n in nodes
        if any(
            where[k] == n
            and protected(pods[k], pdb_allowed)
            and pods[k]["metadata"].get("ownerReferences", [{}])[0].get("kind") != "DaemonSet"
            for k in pods
        )
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters())
def test_every_plan_replays_safely(case: dict[str, Any]) -> None:
    from rightsizer.core.snapshot_parsing import snapshot_from_document

    snapshot = snapshot_from_document(case["document"])
    result = plan(PlanInput(snapshot=snapshot, now=NOW, pools=policies(case["pools"])))
    replay(case, result)
    assert result.summary.cost_per_hour_after <= result.summary.cost_per_hour_before
    assert result.summary.cost_per_hour_after >= Decimal(0)
