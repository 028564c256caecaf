"""The consolidation pass reads the cluster page by page and keeps planner objects, not JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.cluster_snapshot import ClusterReader
from rightsizer.runtime.mapping import read_pool
from tests.unit.planner_builders import gpu_node, gpu_pool, pod

pytestmark = pytest.mark.unit


@dataclass
class Response:
    data: bytes


class Pages:
    """A list endpoint serving `items` in pages of the requested size, recording the calls."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[tuple[int, str | None]] = []

    def __call__(self, *args: Any, limit: int, _continue: str | None, _preload_content: bool) -> Response:
        assert _preload_content is False  # raw JSON, never client models
        self.calls.append((limit, _continue))
        start = int(_continue or 0)
        end = start + limit
        more = {"continue": str(end)} if end < len(self.items) else {}
        page = {"items": self.items[start:end], "metadata": {"resourceVersion": "7", **more}}
        return Response(json.dumps(page).encode())


def unschedulable_pod(name: str) -> dict[str, Any]:
    body = pod(name, None, gpus=1)
    body["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    }
    return body


def reader(nodes: Pages, pods: Pages, pools: Pages, workloads: Pages) -> ClusterReader:
    r = ClusterReader(client.ApiClient(client.Configuration()), read_pool)
    r.PAGE = 2
    r._core = type("Core", (), {"list_node": nodes, "list_pod_for_all_namespaces": pods})()  # type: ignore[assignment]
    r._policy = type("Policy", (), {"list_pod_disruption_budget_for_all_namespaces": Pages([])})()  # type: ignore[assignment]

    def custom(group: str, version: str, plural: str, **kwargs: Any) -> Response:
        return {"gpunodepools": pools, "gpuworkloads": workloads}[plural](**kwargs)

    r._custom = type("Custom", (), {"list_cluster_custom_object": staticmethod(custom)})()  # type: ignore[assignment]
    return r


def test_every_page_is_read_and_parsed() -> None:
    pods = Pages([pod(f"p{i}", "n1", gpus=1) for i in range(4)] + [unschedulable_pod("waiting")])
    nodes = Pages([gpu_node("n1"), gpu_node("n2"), gpu_node("n3")])
    workload = {
        "metadata": {"namespace": "default", "name": "w", "managedFields": [{"manager": "x"}]},
        "spec": {"protection": {"doNotDisrupt": True}},
        "status": {"conditions": []},
    }
    state = reader(
        nodes, pods, Pages([gpu_pool("a100", selector={"pool": "a100"})]), Pages([workload])
    ).read()

    assert pods.calls == [(2, None), (2, "2"), (2, "4")]
    assert [n.name for n in state.snapshot.nodes] == ["n1", "n2", "n3"]
    assert [p.name for p in state.snapshot.pods] == ["p0", "p1", "p2", "p3", "waiting"]
    assert state.unschedulable == frozenset({"default/waiting"})  # found on the last page
    assert [p.name for p in state.pools] == ["a100"]
    # Of a GPUWorkload only what the planner reads is kept: its name and spec.
    assert state.workloads == (
        {"metadata": {"namespace": "default", "name": "w"}, "spec": {"protection": {"doNotDisrupt": True}}},
    )


def test_a_pool_that_does_not_validate_is_reported_naming_the_field_and_the_others_are_read() -> None:
    # The CRD checks a schedule's shape only: minute 61 reaches the operator, which must not take the
    # pool for one without budgets (no limit) nor drop it silently.
    bad = gpu_pool(
        "gold",
        selector={"pool": "gold"},
        disruption={"budgets": [{"nodes": "1", "schedule": "61 * * * *", "duration": "1h"}]},
    )
    typo = gpu_pool("silver", selector={"pool": "silver"}, minNode=1)
    pools = Pages([bad, typo, gpu_pool("a100", selector={"pool": "a100"})])
    state = reader(Pages([gpu_node("n1")]), Pages([]), pools, Pages([])).read()
    assert [p.name for p in state.pools] == ["a100"] and set(state.pool_documents) == {"a100"}
    assert "spec.disruption.budgets.0.schedule: invalid cron schedule" in state.pool_errors["gold"]
    assert "spec.minNode: Extra inputs are not permitted" in state.pool_errors["silver"]
