"""Placement simulation: resources, selectors, affinity, taints and most-allocated choice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rightsizer.core.binpack import (
    Constraints,
    ResourceSpace,
    Simulation,
    anti_affinity_conflict,
    pod_constraints,
    spread_allows,
    to_units,
)
from rightsizer.core.matching import tolerates
from rightsizer.core.snapshot import Snapshot, Taint, Toleration
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import cpu_node, gpu_node, kube_list, pod

pytestmark = pytest.mark.unit


def simulation(snapshot: Snapshot, extra: Snapshot | None = None) -> Simulation:
    pods = snapshot.pods + (extra.pods if extra else ())
    space = ResourceSpace({k for p in pods for k in p.requests})
    sim = Simulation(
        snapshot.nodes,
        space,
        constraints=[pod_constraints(p) for p in pods],
        targetable=[not n.unschedulable for n in snapshot.nodes],
        rank=list(range(len(snapshot.nodes))),
    )
    index = {n.name: i for i, n in enumerate(snapshot.nodes)}
    for p in snapshot.pods:
        if p.node_name:
            sim.reserve(index[p.node_name], space.request(p.requests), p)
    return sim


def target(snapshot: Snapshot, incoming: dict[str, Any], **kwargs: Any) -> str | None:
    new_snapshot = snapshot_from_document(kube_list(incoming))
    sim = simulation(snapshot, new_snapshot)
    new = new_snapshot.pods[0]
    found = sim.find(new, sim.space.request(new.requests), pod_constraints(new), **kwargs)
    return None if found is None else snapshot.nodes[found].name


def cluster(*items: dict[str, Any]) -> Snapshot:
    return snapshot_from_document(kube_list(*items))


@pytest.mark.parametrize(
    ("name", "value", "units"),
    [("cpu", "0.0005", 1), ("cpu", "1.5", 1500), ("memory", "1.5", 2), ("nvidia.com/gpu", "2", 2)],
)
def test_quantities_round_up_to_integer_units(name: str, value: str, units: int) -> None:
    assert to_units(name, Decimal(value)) == units


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        (Toleration("gpu", "Equal", "yes", "NoSchedule"), Taint("gpu", "yes", "NoSchedule"), True),
        (Toleration("gpu", "Equal", "no", "NoSchedule"), Taint("gpu", "yes", "NoSchedule"), False),
        (Toleration("gpu", "Exists", "", ""), Taint("gpu", "yes", "NoExecute"), True),
        (Toleration("", "Exists", "", ""), Taint("anything", "x", "NoSchedule"), True),
        (Toleration("gpu", "Exists", "", "NoExecute"), Taint("gpu", "yes", "NoSchedule"), False),
        (Toleration("other", "Exists", "", ""), Taint("gpu", "yes", "NoSchedule"), False),
    ],
)
def test_tolerations(toleration: Toleration, taint: Taint, tolerated: bool) -> None:
    assert tolerates([toleration], taint) is tolerated


GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        # Most allocated first: a2 has 2 GPUs free, a1 has 6.
        (pod("new-1", None, gpus=2), "a2"),
        (pod("new-1", None, gpus=3), "a1"),
        (pod("new-1", None, gpus=7), None),
        # nodeSelector and required node affinity.
        (pod("new-1", None, gpus=1, node_selector={"zone": "b"}), "a1"),
        (
            pod(
                "new-1",
                None,
                gpus=1,
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}
                            ]
                        }
                    }
                },
            ),
            "a1",
        ),
        (
            pod(
                "new-1",
                None,
                gpus=1,
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {"key": "metadata.name", "operator": "In", "values": ["a1"]}
                                    ]
                                }
                            ]
                        }
                    }
                },
            ),
            "a1",
        ),
        # Hard taints need a toleration; PreferNoSchedule does not.
        (pod("new-1", None, gpus=1, node_selector={"tainted": "yes"}), None),
        (pod("new-1", None, gpus=1, node_selector={"tainted": "yes"}, tolerations=GPU_TOLERATION), "a3"),
        (pod("new-1", None, gpus=1, node_selector={"soft": "yes"}), "a4"),
        # Memory and CPU count as well as GPUs.
        (pod("new-1", None, gpus=1, memory="500Gi"), "a1"),
        (pod("new-1", None, gpus=1, cpu="64"), None),
    ],
)
def test_taints_and_affinity_respected(incoming: dict[str, Any], expected: str | None) -> None:
    snapshot = cluster(
        gpu_node("a1", labels={"zone": "b"}),
        gpu_node("a2", labels={"zone": "a"}),
        gpu_node("a3", labels={"zone": "a", "tainted": "yes"}, taints=GPU_TAINT),
        gpu_node(
            "a4", labels={"zone": "a", "soft": "yes"}, taints=[{"key": "x", "effect": "PreferNoSchedule"}]
        ),
        pod("w-1", "a1", gpus=2, memory="8Gi"),
        pod("w-2", "a2", gpus=6, memory="200Gi"),
        pod("w-3", "a3", gpus=7),
        pod("w-4", "a4", gpus=7, cpu="2", memory="100Gi"),
    )
    assert target(snapshot, incoming) == expected


def test_pod_slots_are_a_resource() -> None:
    snapshot = cluster(cpu_node("c1", pods="2"), cpu_node("c2", pods="3"), pod("w-1", "c1"), pod("w-2", "c1"))
    assert target(snapshot, pod("new-1", None)) == "c2"


def test_extended_resources_must_be_offered() -> None:
    snapshot = cluster(cpu_node("c1"), cpu_node("c2", extra={"example.com/fpga": "1"}))
    incoming = pod("new-1", None)
    incoming["spec"]["containers"][0]["resources"]["requests"]["example.com/fpga"] = "1"
    assert target(snapshot, incoming) == "c2"


def test_cpu_pods_prefer_cpu_nodes_and_fall_back_only_when_allowed() -> None:
    snapshot = cluster(gpu_node("a1"), cpu_node("c1", cpu="4"), pod("w-1", "c1", cpu="3"))
    assert target(snapshot, pod("new-1", None, cpu="1")) == "c1"
    assert target(snapshot, pod("new-1", None, cpu="2")) == "a1"
    assert target(snapshot, pod("new-1", None, cpu="2"), allow_gpu_nodes=False) is None


def test_excluded_node_is_never_chosen() -> None:
    snapshot = cluster(gpu_node("a1"), gpu_node("a2"), pod("w-1", "a1", gpus=4))
    assert target(snapshot, pod("new-1", None, gpus=1), exclude=0) == "a2"


def test_capacity_is_reserved_and_released() -> None:
    snapshot = cluster(gpu_node("a1", gpus=4))
    incoming = snapshot_from_document(kube_list(pod("big-1", None, gpus=4)))
    sim = simulation(snapshot, incoming)
    big = incoming.pods[0]
    request = sim.space.request(big.requests)
    assert sim.find(big, request, pod_constraints(big)) == 0
    sim.reserve(0, request, big)
    assert sim.find(big, request, pod_constraints(big)) is None
    sim.release(0, request, big)
    assert sim.find(big, request, pod_constraints(big)) == 0
    sim.remove_node(0)
    assert sim.find(big, request, pod_constraints(big)) is None


def test_pinned_labels_are_kept() -> None:
    snapshot = cluster(gpu_node("a1"), gpu_node("l1", gpus=4, model="NVIDIA-L4"), pod("w-1", "a1", gpus=8))
    sim = simulation(snapshot)
    new = snapshot_from_document(kube_list(pod("new-1", None, gpus=1))).pods[0]
    pinned = pod_constraints(new, [("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB")])
    sim2 = Simulation(
        snapshot.nodes,
        sim.space,
        constraints=[pinned],
        targetable=[True, True],
        rank=[0, 1],
    )
    sim2.reserve(0, sim.space.request(snapshot.pods[0].requests), snapshot.pods[0])
    assert sim2.find(new, sim.space.request(new.requests), pinned) is None
    assert sim2.find(new, sim.space.request(new.requests), pod_constraints(new)) == 1
    with pytest.raises(ValueError, match="not declared"):
        sim2.find(new, sim.space.request(new.requests), pod_constraints(new, [("zone", "a")]))
    assert Constraints(pins=(("zone", None),)).admits("n", {}, ()) is True
    assert Constraints(pins=(("zone", None),)).admits("n", {"zone": "a"}, ()) is False


ANTI = {
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]
    }
}


def test_anti_affinity_hostname_is_checked_both_ways() -> None:
    snapshot = cluster(
        cpu_node("c1"),
        cpu_node("c2"),
        pod("web-1", "c1", labels={"app": "web"}, affinity=ANTI, cpu="20"),
        pod("db-1", "c2", labels={"app": "db"}, cpu="10"),
    )
    incoming = pod("web-2", None, labels={"app": "web"}, affinity=ANTI)
    assert target(snapshot, incoming) == "c2"
    # A plain pod that the resident's anti-affinity selects is kept away too.
    assert target(snapshot, pod("web-3", None, labels={"app": "web"})) == "c2"
    web1, web3 = cluster(
        pod("web-1", "c1", labels={"app": "web"}, affinity=ANTI), pod("web-3", None, labels={"app": "web"})
    ).pods
    assert anti_affinity_conflict(web3, web1)


def test_hostname_spread_allows_at_most_max_skew_per_node() -> None:
    spread = [
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]
    pods = cluster(
        pod("web-1", "c1", labels={"app": "web"}),
        pod("web-2", "c1", labels={"app": "web"}),
        pod("web-3", None, labels={"app": "web"}, spread=spread),
    ).pods
    assert spread_allows(pods[2], pods[:1])
    assert not spread_allows(pods[2], pods[:2])


def with_host_port(item: dict[str, Any], port: int, ip: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"containerPort": port, "hostPort": port}
    if ip:
        entry["hostIP"] = ip
    item["spec"]["containers"][0]["ports"] = [entry]
    return item


@pytest.mark.parametrize(
    ("port", "ip", "expected"),
    [(9100, "", "c2"), (9100, "10.0.0.5", "c2"), (8080, "", "c1")],
)
def test_host_ports_cannot_be_shared(port: int, ip: str, expected: str) -> None:
    snapshot = cluster(
        cpu_node("c1"),
        cpu_node("c2"),
        with_host_port(pod("exporter-c1", "c1", owner="DaemonSet", cpu="20"), 9100),
        pod("web-1", "c2", cpu="10"),
    )
    assert target(snapshot, with_host_port(pod("new-1", None), port, ip)) == expected
