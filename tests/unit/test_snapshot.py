"""Reading `kubectl get nodes,pods,pdb -A -o json` into the planner's snapshot."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rightsizer.core.errors import InvalidSnapshot
from rightsizer.core.matching import requirement_matches
from rightsizer.core.snapshot import Requirement
from rightsizer.core.snapshot_parsing import pod_requests, snapshot_from_document, snapshot_from_json
from tests.unit.planner_builders import cpu_node, gpu_node, kube_list, pdb, pod

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data" / "snapshots"


def container(name: str, cpu: str, memory: str = "1Gi", **extra: Any) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}


@pytest.mark.parametrize(
    ("spec", "cpu", "memory"),
    [
        ({"containers": [container("a", "1"), container("b", "500m")]}, "1.5", "2Gi"),
        # An init container bigger than the app containers sets the request.
        ({"containers": [container("a", "1")], "initContainers": [container("i", "4", "1Gi")]}, "4", "1Gi"),
        (
            {"containers": [container("a", "1")], "initContainers": [container("i", "250m", "3Gi")]},
            "1",
            "3Gi",
        ),
        # Sidecars (restartable init containers) add to the app containers and to later init containers.
        (
            {
                "containers": [container("a", "1")],
                "initContainers": [container("s", "500m", restartPolicy="Always"), container("i", "1200m")],
            },
            "1.7",
            "2Gi",
        ),
        ({"containers": [container("a", "1")], "overhead": {"cpu": "250m", "memory": "120Mi"}}, "1.25", None),
        ({"containers": [container("a", "1")], "resources": {"requests": {"cpu": "3"}}}, "3", "1Gi"),
        ({"containers": [{"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]}, "2", "1Gi"),
    ],
)
def test_pod_requests_as_the_scheduler_counts_them(
    spec: dict[str, Any], cpu: str, memory: str | None
) -> None:
    requests = pod_requests(spec, "pod x")
    assert requests["cpu"] == Decimal(cpu)
    if memory is not None:
        assert requests["memory"] == Decimal(2**30) * Decimal(memory.removesuffix("Gi"))


def test_overhead_memory_is_added() -> None:
    spec = {"containers": [container("a", "1")], "overhead": {"memory": "120Mi"}}
    assert pod_requests(spec, "pod x")["memory"] == 2**30 + 120 * 2**20


def test_nodes_pods_and_pdbs_are_read() -> None:
    snapshot = snapshot_from_document(
        kube_list(
            gpu_node("a1", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
            cpu_node("c1", unschedulable=True),
            pod("w-1", "a1", gpus=2, node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}),
            pod("pending-1", None, phase="Pending"),
            pdb("w", {"app": "w"}, 1),
        )
    )
    a1, c1 = snapshot.nodes
    assert a1.gpus() == 8 and a1.gpu_model == "NVIDIA-A100-SXM4-80GB"
    assert a1.taints[0].effect == "NoSchedule"
    assert a1.created is not None and a1.created.tzinfo is not None
    assert c1.unschedulable and c1.allocatable["cpu"] == 32
    w1, pending = snapshot.pods
    assert w1.key == "default/w-1" and w1.node_name == "a1" and w1.gpus() == 2
    assert w1.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert w1.controller is not None and w1.controller.kind == "ReplicaSet"
    assert pending.node_name is None
    assert snapshot.pdbs[0].disruptions_allowed == 1


def test_allocatable_falls_back_to_capacity_and_default_pod_slots() -> None:
    document = kube_list(cpu_node("c1"))
    status = document["items"][0]["status"]
    status["capacity"] = {"cpu": "8", "memory": "32Gi", "example.com/fpga": "2"}
    status["allocatable"] = {"cpu": "7500m"}
    node = snapshot_from_document(document).nodes[0]
    assert node.allocatable["cpu"] == Decimal("7.5")
    assert node.allocatable["memory"] == 32 * 2**30
    assert node.allocatable["example.com/fpga"] == 2
    assert node.allocatable["pods"] == 110


def test_affinity_spread_volumes_and_mirror_pods_are_read() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}],
                        "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a9"]}],
                    }
                ]
            }
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "w"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        },
    }
    spread = [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"},
    ]
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}, {"name": "tmp", "emptyDir": {}}]
    mirror = pod("static-1", "a1", owner=None, annotations={"kubernetes.io/config.mirror": "x"})
    snapshot = snapshot_from_document(
        kube_list(pod("w-1", "a1", affinity=affinity, spread=spread, volumes=volumes), mirror)
    )
    w1, static = snapshot.pods
    assert w1.required_node_terms is not None
    assert w1.required_node_terms[0].match_fields[0].key == "metadata.name"
    assert w1.pod_anti_affinity[0].topology_key == "kubernetes.io/hostname"
    assert [c.topology_key for c in w1.spread] == ["topology.kubernetes.io/zone"]
    assert w1.has_claims and w1.local_volumes == ("tmp",)
    assert static.is_mirror and not w1.is_mirror


@pytest.mark.parametrize(
    ("operator", "values", "value", "matches"),
    [
        ("In", ("a", "b"), "a", True),
        ("In", ("a",), None, False),
        ("NotIn", ("a",), None, True),
        ("NotIn", ("a",), "a", False),
        ("Exists", (), "", True),
        ("Exists", (), None, False),
        ("DoesNotExist", (), None, True),
        ("Gt", ("4",), "8", True),
        ("Gt", ("8",), "8", False),
        ("Lt", ("8",), "4", True),
        ("Lt", ("8",), "x", False),
    ],
)
def test_requirement_operators(
    operator: str, values: tuple[str, ...], value: str | None, matches: bool
) -> None:
    assert requirement_matches(Requirement("k", operator, values), value) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"kind": "Pod", "metadata": {"name": "x"}}', "List"),
        ("[1, 2]", "List"),
        ('{"kind": "List"}', "items"),
        ('{"kind": "List", "items": [{"metadata": {"name": "x"}}]}', "kind"),
        ('{"kind": "List", "items": [{"kind": "Node", "metadata": {}}]}', "metadata.name"),
    ],
)
def test_bad_snapshot_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(InvalidSnapshot, match=message):
        snapshot_from_json(text)


def test_bad_quantity_names_the_object_and_field() -> None:
    document = kube_list(pod("w-1", "a1", cpu="lots"))
    with pytest.raises(InvalidSnapshot, match=r"pod default/w-1 containers\[0\].*'lots'"):
        snapshot_from_document(document)


def test_bad_node_quantity_is_refused() -> None:
    document = kube_list(gpu_node("a1"))
    document["items"][0]["status"]["allocatable"]["memory"] = "12 GB"
    with pytest.raises(InvalidSnapshot, match="node a1"):
        snapshot_from_document(document)


def test_typed_lists_and_unknown_kinds() -> None:
    node_list = {
        "kind": "NodeList",
        "items": [{"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "1"}}}],
    }
    assert snapshot_from_document(node_list).nodes[0].name == "n1"
    other = kube_list({"kind": "Service", "metadata": {"name": "s"}})
    assert snapshot_from_document(other) == snapshot_from_document(kube_list())


def test_pdb_without_status_allows_nothing() -> None:
    document = kube_list(pdb("w", {"app": "w"}, 1))
    del document["items"][0]["status"]
    assert snapshot_from_document(document).pdbs[0].disruptions_allowed == 0


def test_stored_snapshots_parse() -> None:
    for path in sorted(DATA.glob("*.json")):
        document = json.loads(path.read_text())
        if document.get("kind") == "List" and any(i.get("kind") == "Node" for i in document["items"]):
            assert snapshot_from_document(document).nodes


def test_host_ports_are_read_and_bad_integers_refused() -> None:
    item = pod("w-1", "a1")
    item["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]
    assert snapshot_from_document(kube_list(item)).pods[0].host_ports == (("UDP", 8080, ""),)
    item["spec"]["containers"][0]["ports"][0]["hostPort"] = "eighty"
    with pytest.raises(InvalidSnapshot, match="hostPort"):
        snapshot_from_document(kube_list(item))
