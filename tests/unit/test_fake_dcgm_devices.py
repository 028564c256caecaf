"""The fake dcgm-exporter's MIG instances, time-sliced GPUs and per-GPU activity, read back through
the operator's own reader."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.adapters.metrics.base import AUTO_SIGNAL, GPU_UTIL, GR_ENGINE_ACTIVE, summarise
from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.adapters.metrics.gathering import RawSeries, gather
from rightsizer.adapters.metrics.inspection import inspect_text
from rightsizer.adapters.metrics.series_shapes import LabelShape
from rightsizer.devcluster import fake_dcgm
from rightsizer.devcluster.dcgm_text import LABEL_FLAVOURS, render
from rightsizer.devcluster.exporter_state import ClusterObjects, FakeDcgmExporter
from rightsizer.devcluster.gpu_devices import GpuNode, GpuPod, assign_mig, gpu_uuid, mig_layout
from rightsizer.devcluster.scenario_rules import ScenarioError, load_scenario
from tests.support.serving import serving

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
A100, L4 = "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"


def node_json(
    name: str, capacity: Mapping[str, str], product: str = A100, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product, **(labels or {})}},
        "status": {"capacity": {"cpu": "64", **capacity}},
    }


def time_sliced_node(name: str = "l4-0", gpus: int = 2, replicas: int = 4) -> dict[str, Any]:
    return node_json(
        name,
        {"nvidia.com/gpu": str(gpus * replicas)},
        L4,
        {"nvidia.com/gpu.replicas": str(replicas), "nvidia.com/gpu.sharing-strategy": "time-slicing"},
    )


def pod_json(
    name: str, node: str, resources: Mapping[str, str], created: datetime = T0, namespace: str = "ml"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": created.isoformat().replace("+00:00", "Z"),
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "resources": {"limits": dict(resources)}}],
        },
        "status": {"phase": "Running"},
    }


def scenario_cm(text: str, namespace: str = "ml") -> dict[str, Any]:
    meta = {"name": "fake-dcgm-scenario", "namespace": namespace, "uid": "cm-1", "resourceVersion": "1"}
    return {"metadata": meta, "data": {"scenario.yaml": text}}


class World:
    def __init__(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]], scenario: str = "") -> None:
        self.nodes, self.pods = nodes, pods
        self.configmaps = [scenario_cm(scenario)] if scenario else []

    def exporter(self) -> FakeDcgmExporter:
        return FakeDcgmExporter(
            lambda: ClusterObjects(self.nodes, self.pods, self.configmaps), clock=lambda: T0
        )

    def text(self, virtual_gpus: bool = True) -> str:
        view = self.exporter().refresh()
        return render(view.readings(T0, virtual_gpus=virtual_gpus), LABEL_FLAVOURS["new"])


def lines(text: str, metric: str, *fragments: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(metric + "{") and all(f in ln for f in fragments)]


def value(line: str) -> float:
    return float(line.rsplit(" ", 1)[1])


# -- MIG -------------------------------------------------------------------------------------------


def mig_world(scenario: str = "rules:\n- podPrefix: mig-a\n  util: 40\n") -> World:
    node = node_json("a100-mig", {"nvidia.com/gpu": "1", "nvidia.com/mig-1g.10gb": "7"})
    node["metadata"]["labels"]["nvidia.com/gpu.memory"] = "81920"
    pods = [pod_json("mig-a", "a100-mig", {"nvidia.com/mig-1g.10gb": "1"})]
    return World([node], pods, scenario)


def test_mig_instances_carry_the_parents_gpu_labels_and_their_instance_not_gpu_util() -> None:
    text = mig_world().text()
    parent = gpu_uuid("a100-mig", 1)  # the MIG-enabled GPU follows the node's one whole GPU
    (busy,) = lines(text, GR_ENGINE_ACTIVE, 'pod="mig-a"')
    assert busy == (
        f'{GR_ENGINE_ACTIVE}{{gpu="1",UUID="{parent}",pci_bus_id="00000000:0F:00.0",device="nvidia1",'
        'modelName="NVIDIA A100-SXM4-80GB",GPU_I_PROFILE="1g.10gb",GPU_I_ID="1",Hostname="a100-mig",'
        'DCGM_FI_DRIVER_VERSION="550.127.05",container="main",namespace="ml",pod="mig-a"} 0.400000'
    )
    instances = lines(text, GR_ENGINE_ACTIVE, 'GPU_I_PROFILE="1g.10gb"')
    assert len(instances) == 7 and all(f'UUID="{parent}"' in ln for ln in instances)
    assert len({ln.split('GPU_I_ID="')[1].split('"')[0] for ln in instances}) == 7
    # DCGM has no GPU_UTIL for MIG instances; the whole GPU beside them still reports it.
    (whole,) = lines(text, GPU_UTIL)
    assert '{gpu="0"' in whole and "GPU_I_ID" not in whole
    # Memory is the slice's: an eighth of the 80 GB GPU, less the busy pod's CUDA context.
    assert value(lines(text, "DCGM_FI_DEV_FB_FREE", 'pod="mig-a"')[0]) == 10240 - 512
    assert value(lines(text, "DCGM_FI_DEV_FB_FREE", 'GPU_I_ID="2"')[0]) == 10240


def test_a_node_with_only_mig_resources_is_still_a_gpu_node() -> None:
    node = node_json("mig-only", {"nvidia.com/mig-3g.40gb": "2"})
    text = World([node], []).text()
    assert len(lines(text, GR_ENGINE_ACTIVE, 'Hostname="mig-only"', 'GPU_I_PROFILE="3g.40gb"')) == 2
    assert "HELP DCGM_FI_DEV_GPU_UTIL" not in text  # no series of it on this node at all


def test_mig_instances_are_packed_largest_first_onto_parents_after_the_whole_gpus() -> None:
    node = GpuNode("n", 1, A100, 81920, mig=(("1g.10gb", 2), ("3g.40gb", 2), ("4g.40gb", 1)))
    layout = [(i.gpu, i.instance_id, i.profile, i.memory_mib) for i in mig_layout(node)]
    assert layout == [
        (1, 1, "4g.40gb", 40960),
        (1, 2, "3g.40gb", 40960),  # 4g + 3g fill the 7 compute and 8 memory slices of GPU 1
        (2, 1, "3g.40gb", 40960),
        (2, 2, "1g.10gb", 10240),
        (2, 3, "1g.10gb", 10240),
    ]


def test_mig_pods_keep_their_instances_and_a_pod_that_does_not_fit_gets_none() -> None:
    node = GpuNode("n", 0, A100, mig=(("1g.10gb", 2),))

    def pod(name: str, count: int, second: int) -> GpuPod:
        return GpuPod(
            name, "ml", name, "n", T0 + timedelta(seconds=second), (), mig=(("main", "1g.10gb", count),)
        )

    first = assign_mig([node], [pod("a", 1, 0), pod("b", 1, 1)], {})
    assert [h.pod for h in first["n"].values()] == ["a", "b"]
    again = assign_mig([node], [pod("b", 1, 1), pod("c", 2, 2), pod("d", 1, 3)], first)
    assert {i.instance_id: h.pod for i, h in again["n"].items()} == {1: "d", 2: "b"}  # c wants two


def test_the_operator_reads_a_mig_instance_as_gr_engine_active_at_the_rules_percent() -> None:
    seen = inspect_text(mig_world().text(), LabelShape(), AUTO_SIGNAL, T0)
    pod = seen.pods["ml/mig-a"]
    assert (pod.gpus, pod.signal, pod.shared) == (1, GR_ENGINE_ACTIVE, False)
    assert pod.utilization == pytest.approx(40)
    assert seen.unattributed == 7  # the idle whole GPU and the six free instances


# -- time-slicing ----------------------------------------------------------------------------------


def shared_world(utils: Mapping[str, float]) -> World:
    pods = [
        pod_json(name, "l4-0", {"nvidia.com/gpu": "1"}, T0 + timedelta(seconds=i))
        for i, name in enumerate(utils)
    ]
    rules = "rules:\n" + "".join(f"- podPrefix: {name}\n  util: {u}\n" for name, u in utils.items())
    return World([time_sliced_node()], pods, rules)


def test_sharers_fill_one_physical_gpus_replicas_before_the_next_and_keep_them() -> None:
    world = shared_world({f"p{i}": 10 for i in range(5)})
    exporter = world.exporter()
    view = exporter.refresh()
    assert (view.nodes[0].gpu_count, view.nodes[0].replicas) == (2, 4)
    text = render(view.readings(T0), LABEL_FLAVOURS["new"])
    on_gpu = {
        i: [ln.split('pod="')[1].split('"')[0] for ln in lines(text, GPU_UTIL, f'{{gpu="{i}"')]
        for i in (0, 1)
    }
    assert on_gpu == {0: ["p0", "p1", "p2", "p3"], 1: ["p4"]}
    # Replica slot s is replica s % 4 of GPU s // 4; a freed slot goes to the next newcomer.
    world.pods = [p for p in world.pods if p["metadata"]["name"] != "p1"]
    world.pods.append(pod_json("late", "l4-0", {"nvidia.com/gpu": "1"}, T0 + timedelta(minutes=1)))
    slots = {h.pod: s for s, h in exporter.refresh().assignment["l4-0"].items()}
    assert slots == {"p0": 0, "late": 1, "p2": 2, "p3": 3, "p4": 4}


def test_with_virtual_gpus_every_sharer_gets_the_devices_summed_value() -> None:
    text = shared_world({"chat": 30, "embed": 50}).text()
    chat, embed = lines(text, GPU_UTIL, 'pod="chat"'), lines(text, GPU_UTIL, 'pod="embed"')
    assert len(chat) == len(embed) == 1
    uuid = f'UUID="{gpu_uuid("l4-0", 0)}"'
    assert uuid in chat[0] and uuid in embed[0] and '{gpu="0"' in chat[0] and '{gpu="0"' in embed[0]
    assert value(chat[0]) == value(embed[0]) == 80
    assert 'pod="chat",vgpu="0"' in chat[0] and 'pod="embed",vgpu="1"' in embed[0]
    assert value(lines(text, GR_ENGINE_ACTIVE, 'pod="chat"')[0]) == pytest.approx(0.8)


def test_without_virtual_gpus_only_one_sharer_carries_pod_labels() -> None:
    text = shared_world({"chat": 30, "embed": 50}).text(virtual_gpus=False)
    (device,) = lines(text, GPU_UTIL, '{gpu="0"')
    assert 'pod="chat"' in device and "vgpu" not in device and value(device) == 80
    assert 'pod="embed"' not in text


def test_the_operator_sees_both_sharers_as_shared_with_the_devices_value() -> None:
    world = shared_world({"chat": 30, "embed": 50})
    seen = inspect_text(world.text(), LabelShape(), AUTO_SIGNAL, T0).pods
    assert set(seen) == {"ml/chat", "ml/embed"}
    assert all(p.shared and p.utilization == pytest.approx(80) for p in seen.values())
    alone = inspect_text(world.text(virtual_gpus=False), LabelShape(), AUTO_SIGNAL, T0).pods
    assert set(alone) == {"ml/chat"}  # the other sharer is unknown, not idle


def test_a_shared_gpu_reads_at_most_100_percent() -> None:
    text = shared_world({"a": 70, "b": 60}).text()
    assert [value(ln) for ln in lines(text, GPU_UTIL, '{gpu="0"')] == [100, 100]


def test_rename_by_default_gpu_shared_resource_is_time_sliced_too() -> None:
    node = node_json("l4-s", {"nvidia.com/gpu.shared": "4"}, L4, {"nvidia.com/gpu.replicas": "4"})
    pods = [pod_json(n, "l4-s", {"nvidia.com/gpu.shared": "1"}) for n in ("a", "b")]
    text = World([node], pods, "rules:\n- util: 20\n").text()
    assert [value(ln) for ln in lines(text, GPU_UTIL, 'UUID="' + gpu_uuid("l4-s", 0))] == [40, 40]
    assert len(lines(text, GPU_UTIL)) == 2  # one physical GPU


@pytest.fixture
def served() -> Iterator[str]:
    world = shared_world({"chat": 30, "embed": 50})
    exporter = world.exporter()
    exporter.refresh()
    server = fake_dcgm._Server(
        ("127.0.0.1", 0), exporter, LABEL_FLAVOURS["new"], timedelta(seconds=30), virtual_gpus=False
    )
    with serving(server) as url:
        yield url


def test_virtual_gpus_is_an_exporter_option_each_request_may_override(served: str) -> None:
    def body(query: str) -> str:
        with urllib.request.urlopen(f"{served}/metrics{query}", timeout=5) as response:
            return str(response.read().decode())

    assert 'pod="embed"' not in body("")  # the server was started with virtual GPUs off
    assert 'pod="embed",vgpu="1"' in body("?virtual-gpus=on")
    with pytest.raises(urllib.error.HTTPError) as refused:
        body("?virtual-gpus=maybe")
    assert refused.value.code == 400


def test_cli_virtual_gpus_flag_defaults_on() -> None:
    parser = argparse.ArgumentParser()
    fake_dcgm.add_arguments(parser)
    assert parser.parse_args(["--kubeconfig", "k"]).virtual_gpus is True
    assert parser.parse_args(["--kubeconfig", "k", "--no-virtual-gpus"]).virtual_gpus is False


# -- per-GPU activity ------------------------------------------------------------------------------


def eight_gpu_world(gpu_util: str) -> World:
    node = node_json("a100-0", {"nvidia.com/gpu": "8"})
    pods = [pod_json("train-0", "a100-0", {"nvidia.com/gpu": "8"})]
    return World([node], pods, f"rules:\n- podPrefix: train-\n  gpuUtil: {gpu_util}\n")


def test_gpu_util_gives_each_gpu_of_the_pod_its_own_percent() -> None:
    text = eight_gpu_world("[30, 0, 0, 0, 0, 0, 0, 0]").text()
    assert [value(lines(text, GPU_UTIL, f'{{gpu="{i}"')[0]) for i in range(8)] == [30, 0, 0, 0, 0, 0, 0, 0]
    short = eight_gpu_world("[0, 0, 70]").text()  # missing elements read 0
    assert [value(lines(short, GPU_UTIL, f'{{gpu="{i}"')[0]) for i in range(8)] == [0, 0, 70, 0, 0, 0, 0, 0]


def test_the_operators_peak_for_the_pod_is_its_busy_gpu() -> None:
    text = eight_gpu_world("[30, 0, 0, 0, 0, 0, 0, 0]").text()
    raw = [RawSeries(s.name, s.labels, [(T0, s.value)]) for s in parse_exposition(text).series]
    sample = summarise(gather(raw, AUTO_SIGNAL, LabelShape()).gpus, "last", 0)
    assert sample is not None and sample.gpus == 8
    assert sample.peak == pytest.approx(30) and sample.value == pytest.approx(30 / 8)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules:\n- util: 10\n  gpuUtil: [10]\n", "gpuUtil (a percent per GPU) cannot be combined"),
        ("rules:\n- series: [[0, 1]]\n  gpuUtil: [10]\n", "cannot be combined with util or series"),
        ("rules:\n- gpuUtil: [10, 101]\n", "gpuUtil[1] = 101.0 is outside 0..100"),
        ("rules:\n- gpuUtil: []\n", "gpuUtil needs at least one percent"),
    ],
)
def test_gpu_util_is_validated_with_a_clear_message(text: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(text, "ConfigMap ml/fake-dcgm-scenario", namespace="ml")
    assert problem in str(caught.value)
