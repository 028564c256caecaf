"""The fake dcgm-exporter: exact text, GPU assignment, scenario rules, HTTP routes."""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.adapters.metrics.inspection import inspect_text
from rightsizer.adapters.metrics.series_shapes import AUTO
from rightsizer.cli import fake_dcgm as fake_dcgm_cli
from rightsizer.core.errors import ExpositionParseError
from rightsizer.devcluster.api_objects import nodes_from_api, pods_from_api
from rightsizer.devcluster.dcgm_text import LABEL_FLAVOURS, LabelNames, render
from rightsizer.devcluster.exporter_state import ClusterObjects, FakeDcgmExporter
from rightsizer.devcluster.fake_dcgm import UsageError, _Server, parse_listen
from rightsizer.devcluster.gpu_devices import (
    GpuNode,
    GpuPod,
    Holder,
    assign_gpus,
    gpu_uuid,
    model_name,
    spec_for,
)
from rightsizer.devcluster.scenario import gpu_readings
from rightsizer.devcluster.scenario_rules import ActiveRule, Rule, ScenarioError, load_scenario
from tests.support.serving import serving

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
A100 = "NVIDIA-A100-SXM4-80GB"


def node_json(name: str, gpus: int = 8, product: str = A100, memory: str | None = "81920") -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": product, "kubernetes.io/hostname": name}
    if memory:
        labels["nvidia.com/gpu.memory"] = memory
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"capacity": {"cpu": "64", "nvidia.com/gpu": str(gpus)}},
    }


def pod_json(
    name: str,
    *,
    node: str = "a100-0",
    gpus: int = 1,
    namespace: str = "ml",
    created: datetime = T0,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    phase: str = "Running",
    uid: str | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "creationTimestamp": created.isoformat().replace("+00:00", "Z"),
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "main", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
                {"name": "sidecar", "resources": {"requests": {"cpu": "100m"}}},
            ],
        },
        "status": {"phase": phase},
    }


def scenario_cm(namespace: str, text: str, uid: str = "cm-1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "fake-dcgm-scenario",
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "1",
        },
        "data": {"scenario.yaml": text},
    }


class World:
    """A mutable cluster listing and clock for driving FakeDcgmExporter."""

    def __init__(self) -> None:
        self.now = T0
        self.nodes: list[dict[str, Any]] = [node_json("a100-0", gpus=2)]
        self.pods: list[dict[str, Any]] = []
        self.configmaps: list[dict[str, Any]] = []

    def list(self) -> ClusterObjects:
        return ClusterObjects(self.nodes, self.pods, self.configmaps)

    def exporter(self, scenario_file: Path | None = None) -> FakeDcgmExporter:
        return FakeDcgmExporter(self.list, scenario_file=scenario_file, clock=lambda: self.now)


def metrics_text(exporter: FakeDcgmExporter, now: datetime, names: LabelNames = LABEL_FLAVOURS["new"]) -> str:
    view = exporter.refresh()
    return render(view.readings(now), names)


def value_of(text: str, metric: str, **labels: str) -> float:
    """The value of the one line of `metric` carrying all `labels` (plain substring match)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    lines = [ln for ln in text.splitlines() if ln.startswith(metric + "{") and all(w in ln for w in wanted)]
    assert len(lines) == 1, f"expected one {metric} line with {labels}, got {lines}"
    return float(lines[0].rsplit(" ", 1)[1])


# -- the exact text ------------------------------------------------------------------------------


def test_busy_gpu_line_matches_dcgm_exporter_format_exactly() -> None:
    world = World()
    world.pods = [pod_json("web-1")]
    world.configmaps = [scenario_cm("ml", "rules:\n- podPrefix: web-\n  util: 73\n")]
    text = metrics_text(world.exporter(), T0)
    uuid = gpu_uuid("a100-0", 0)
    assert (
        "DCGM_FI_DEV_GPU_UTIL{"
        f'gpu="0",UUID="{uuid}",pci_bus_id="00000000:07:00.0",device="nvidia0",'
        'modelName="NVIDIA A100-SXM4-80GB",Hostname="a100-0",DCGM_FI_DRIVER_VERSION="550.127.05",'
        'container="main",namespace="ml",pod="web-1"} 73'
    ) in text.splitlines()
    assert (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE{"
        f'gpu="0",UUID="{uuid}",pci_bus_id="00000000:07:00.0",device="nvidia0",'
        'modelName="NVIDIA A100-SXM4-80GB",Hostname="a100-0",DCGM_FI_DRIVER_VERSION="550.127.05",'
        'container="main",namespace="ml",pod="web-1"} 0.730000'
    ) in text.splitlines()


def test_help_and_type_lines_are_dcgm_exporters_own() -> None:
    text = metrics_text(World().exporter(), T0)
    comments = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert comments == [
        "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).",
        "# TYPE DCGM_FI_DEV_SM_CLOCK gauge",
        "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).",
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge",
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).",
        "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        "# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).",
        "# TYPE DCGM_FI_DEV_FB_FREE gauge",
        "# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).",
        "# TYPE DCGM_FI_DEV_FB_USED gauge",
        "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.",
        "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
    ]
    assert text.endswith("\n")


def test_idle_gpu_reports_zero_and_carries_no_pod_labels() -> None:
    world = World()
    world.pods = [pod_json("web-1")]
    world.configmaps = [scenario_cm("ml", "rules:\n- util: 90\n")]
    text = metrics_text(world.exporter(), T0)
    idle = [ln for ln in text.splitlines() if 'gpu="1"' in ln]
    assert len(idle) == 7  # one line per metric
    assert all("namespace=" not in ln and "pod=" not in ln and "container=" not in ln for ln in idle)
    assert value_of(text, "DCGM_FI_DEV_GPU_UTIL", gpu="1") == 0
    assert value_of(text, "DCGM_FI_DEV_POWER_USAGE", gpu="1") == 60.0  # A100 idle watts
    assert value_of(text, "DCGM_FI_DEV_FB_USED", gpu="1") == 0
    assert value_of(text, "DCGM_FI_DEV_FB_FREE", gpu="1") == 81920


def test_a_pod_the_exporter_cannot_map_has_no_series_but_keeps_its_gpu() -> None:
    world = World()
    world.pods = [
        pod_json("web-1"),
        pod_json("web-2", annotations={"rightsizer.io/fake-dcgm-unmapped": "true"}),
    ]
    world.configmaps = [scenario_cm("ml", "rules:\n- util: 90\n")]
    text = metrics_text(world.exporter(), T0)
    assert 'pod="web-1"' in text and 'pod="web-2"' not in text
    # Its GPU is still taken (web-1 holds GPU 0, web-2 GPU 1) and written without pod labels.
    assert value_of(text, "DCGM_FI_DEV_GPU_UTIL", gpu="0") == 90
    assert 'namespace="ml"' not in next(ln for ln in text.splitlines() if 'gpu="1"' in ln)


@pytest.mark.parametrize(
    ("flavour", "hostname", "expected"),
    [
        (
            "new",
            None,
            'Hostname="a100-0",DCGM_FI_DRIVER_VERSION="550.127.05",container="main",namespace="ml",pod="w"}',
        ),
        (
            "old",
            None,
            'Hostname="a100-0",DCGM_FI_DRIVER_VERSION="550.127.05",'
            'container_name="main",pod_name="w",pod_namespace="ml"}',
        ),
        ("new", "hostname", 'hostname="a100-0",DCGM_FI_DRIVER_VERSION="550.127.05",container="main"'),
        ("1.x", None, 'dcgm_gpu_utilization{gpu="0",uuid="GPU-'),
    ],
)
def test_label_flavours_name_pod_and_host_labels_like_each_exporter_release(
    flavour: str, hostname: str | None, expected: str
) -> None:
    world = World()
    world.pods = [pod_json("w")]
    names = LABEL_FLAVOURS[flavour]
    if hostname:
        names = LabelNames(hostname, names.namespace, names.pod, names.container)
    text = metrics_text(world.exporter(), T0, names)
    assert expected in text


def test_only_nodes_with_gpu_capacity_are_exported() -> None:
    world = World()
    world.nodes = [node_json("a100-0", gpus=1), {"metadata": {"name": "cpu-0"}, "status": {"capacity": {}}}]
    text = metrics_text(world.exporter(), T0)
    assert "cpu-0" not in text
    assert text.count("DCGM_FI_DEV_GPU_UTIL{") == 1


# -- power, memory, models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "util", "watts"),
    [
        ("NVIDIA-A100-SXM4-80GB", 0, 60.0),
        ("NVIDIA-A100-SXM4-80GB", 50, 230.0),
        ("NVIDIA-A100-SXM4-80GB", 100, 400.0),
        ("NVIDIA-H100-80GB-HBM3", 100, 700.0),
        ("NVIDIA-L4", 50, 44.0),
        ("Tesla-T4", 100, 70.0),
        ("NVIDIA-L40S", 0, 50.0),  # unknown model: the default table entry, not L4's
        ("Some-Other-GPU", 100, 300.0),
    ],
)
def test_power_follows_utilisation_between_idle_and_max_watts_of_the_model(
    product: str, util: float, watts: float
) -> None:
    node = GpuNode("n", 1, product)
    pod = GpuPod("u", "ml", "p", "n", T0, (("main", 1),), util_override=util)
    assignment = assign_gpus([node], [pod], {})
    (reading,) = gpu_readings([node], {"u": pod}, assignment, [], T0)
    assert reading.power_watts == pytest.approx(watts)


def test_model_name_is_the_product_label_as_the_driver_spells_it() -> None:
    assert model_name("NVIDIA-A100-SXM4-80GB") == "NVIDIA A100-SXM4-80GB"
    assert model_name("NVIDIA-H100-80GB-HBM3") == "NVIDIA H100 80GB HBM3"
    assert model_name("NVIDIA-L4") == "NVIDIA L4"
    assert model_name("NVIDIA-B200") == "NVIDIA B200"
    assert spec_for("NVIDIA-L40S") is not spec_for("NVIDIA-L4")


def test_memory_used_comes_from_the_rule_and_free_is_the_rest_of_the_node_label() -> None:
    world = World()
    world.nodes = [node_json("l4-0", gpus=1, product="NVIDIA-L4", memory="23034")]
    world.pods = [pod_json("train-0", node="l4-0"), pod_json("busy-0", node="l4-0", uid="u2")]
    world.nodes[0]["status"]["capacity"]["nvidia.com/gpu"] = "2"
    world.configmaps = [
        scenario_cm(
            "ml",
            "rules:\n- podPrefix: train-\n  util: 40\n  memoryUsedMiB: 20000\n"
            "- podPrefix: busy-\n  util: 5\n",
        )
    ]
    text = metrics_text(world.exporter(), T0)
    assert value_of(text, "DCGM_FI_DEV_FB_USED", pod="train-0") == 20000
    assert value_of(text, "DCGM_FI_DEV_FB_FREE", pod="train-0") == 3034
    assert value_of(text, "DCGM_FI_DEV_FB_USED", pod="busy-0") == 512  # a busy GPU's baseline


# -- GPU assignment --------------------------------------------------------------------------------


def test_gpus_are_assigned_in_creation_order_with_lowest_free_indices() -> None:
    world = World()
    world.nodes = [node_json("a100-0", gpus=4)]
    world.pods = [
        pod_json("b", gpus=1, created=T0 + timedelta(seconds=5)),
        pod_json("a", gpus=2, created=T0 + timedelta(seconds=5)),
        pod_json("first", gpus=1, created=T0),
    ]
    view = world.exporter().refresh()
    holders = {i: h.pod for i, h in view.assignment["a100-0"].items()}
    assert holders == {0: "first", 1: "a", 2: "a", 3: "b"}


def test_a_pod_keeps_its_gpus_while_it_lives_even_when_an_older_pod_leaves() -> None:
    world = World()
    world.nodes = [node_json("a100-0", gpus=4)]
    world.pods = [pod_json("old", created=T0), pod_json("young", created=T0 + timedelta(seconds=1))]
    exporter = world.exporter()
    first = exporter.refresh().assignment["a100-0"]
    world.pods = [world.pods[1], pod_json("newest", created=T0 + timedelta(seconds=9))]
    second = exporter.refresh().assignment["a100-0"]
    assert first[1].pod == second[1].pod == "young"
    assert second[0].pod == "newest"  # the freed GPU goes to the newcomer
    # Scraping again changes nothing.
    assert exporter.refresh().assignment["a100-0"] == second


def test_a_recreated_pod_with_the_same_name_is_a_new_holder() -> None:
    previous = {"n": {0: Holder("old-uid", "ml", "p", "main")}}
    node = GpuNode("n", 2, A100)
    pod = GpuPod("new-uid", "ml", "p", "n", T0, (("main", 1),))
    assert assign_gpus([node], [pod], previous) == {"n": {0: Holder("new-uid", "ml", "p", "main")}}


def test_a_pod_that_does_not_fit_gets_no_gpu_rather_than_a_share() -> None:
    node = GpuNode("n", 2, A100)
    first = GpuPod("u1", "ml", "a", "n", T0, (("main", 1),))
    too_big = GpuPod("u2", "ml", "b", "n", T0 + timedelta(seconds=1), (("main", 2),))
    assignment = assign_gpus([node], [first, too_big], {})
    assert [h.pod for h in assignment["n"].values()] == ["a"]


def test_pending_pods_and_pods_without_gpu_requests_get_no_gpu() -> None:
    pods, _ = pods_from_api(
        [
            pod_json("pending", phase="Pending"),
            pod_json("cpu-only", gpus=0),
            pod_json("ok"),
        ]
    )
    assert [p.name for p in pods] == ["ok"]
    assert pods[0].containers == (("main", 1),)


def test_containers_each_get_their_own_gpus_and_labels() -> None:
    item = pod_json("multi")
    item["spec"]["containers"][1]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    world = World()
    world.pods = [item]
    text = metrics_text(world.exporter(), T0)
    assert 'container="main",namespace="ml",pod="multi"' in text
    assert 'container="sidecar",namespace="ml",pod="multi"' in text


# -- scenario rules --------------------------------------------------------------------------------


def rules(text: str, namespace: str = "ml", start: datetime = T0) -> list[ActiveRule]:
    return [ActiveRule(namespace, r, r.start or start) for r in load_scenario(text, "test", namespace).rules]


def util_of(pod: GpuPod, active: list[ActiveRule], now: datetime = T0) -> float:
    node = GpuNode(pod.node, 1, A100)
    assignment = assign_gpus([node], [pod], {})
    (reading,) = gpu_readings([node], {pod.uid: pod}, assignment, active, now)
    return reading.util


def gpu_pod(
    name: str = "web-1", labels: Mapping[str, str] | None = None, override: float | None = None
) -> GpuPod:
    return GpuPod("u", "ml", name, "n", T0, (("main", 1),), labels=dict(labels or {}), util_override=override)


def test_later_rules_win() -> None:
    active = rules("rules:\n- util: 10\n- podPrefix: web-\n  util: 60\n- podPrefix: nope-\n  util: 99\n")
    assert util_of(gpu_pod(), active) == 60


def test_selector_must_match_every_label() -> None:
    active = rules("rules:\n- selector: {app: web, tier: gpu}\n  util: 80\n")
    assert util_of(gpu_pod(labels={"app": "web", "tier": "gpu"}), active) == 80
    assert util_of(gpu_pod(labels={"app": "web"}), active) == 0


def test_annotation_overrides_every_rule() -> None:
    active = rules("rules:\n- util: 10\n")
    assert util_of(gpu_pod(override=55), active) == 55


def test_rules_of_another_namespace_do_not_apply() -> None:
    assert util_of(gpu_pod(), rules("rules:\n- util: 10\n", namespace="other")) == 0


def test_pod_matched_by_no_rule_reports_zero() -> None:
    assert util_of(gpu_pod(), []) == 0


@pytest.mark.parametrize(
    ("seconds", "util"),
    [(-5, 10), (0, 10), (119, 10), (120, 90), (121, 90), (3600, 90)],
)
def test_series_is_piecewise_constant_and_holds_the_last_value(seconds: int, util: float) -> None:
    active = rules("rules:\n- series: [[0, 10], [120, 90]]\n")
    assert util_of(gpu_pod(), active, T0 + timedelta(seconds=seconds)) == util


def test_series_start_defaults_to_when_the_exporter_first_saw_the_rule() -> None:
    world = World()
    world.pods = [pod_json("web-1")]
    world.configmaps = [scenario_cm("ml", "rules:\n- series: [[0, 10], [60, 90]]\n")]
    exporter = world.exporter()
    world.now = T0 + timedelta(hours=1)  # the rule is first seen now, however old the pod
    assert value_of(metrics_text(exporter, world.now), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 10
    world.now += timedelta(seconds=61)
    assert value_of(metrics_text(exporter, world.now), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 90
    # Removing the rule and adding it back starts the series again.
    world.configmaps = []
    exporter.refresh()
    world.configmaps = [scenario_cm("ml", "rules:\n- series: [[0, 10], [60, 90]]\n")]
    assert value_of(metrics_text(exporter, world.now), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 10


def test_explicit_start_is_honoured() -> None:
    active = rules('rules:\n- series: [[0, 10], [60, 90]]\n  start: "2026-11-25T09:00:00Z"\n')
    assert util_of(gpu_pod(), active, T0) == 90


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules:\n- podPrefix: a\n", "exactly one of util or series"),
        ("rules:\n- util: 10\n  series: [[0, 1]]\n", "exactly one of util or series"),
        ("rules:\n- util: 101\n", "less than or equal to 100"),
        ("rules:\n- series: [[10, 1], [5, 2]]\n", "strictly increasing"),
        ("rules:\n- series: []\n", "at least one"),
        ("rules:\n- utl: 10\n", "utl"),
        ("rules: [[[\n", "not YAML"),
        ("- util: 10\n", "mapping"),
        ("rules:\n- util: 10\n  namespace: other\n", "differs from the ConfigMap's"),
    ],
)
def test_bad_scenarios_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ScenarioError, match="invalid fake DCGM scenario") as caught:
        load_scenario(text, "ConfigMap ml/fake-dcgm-scenario", namespace="ml")
    assert problem in str(caught.value)


def test_scenario_file_rules_must_name_their_namespace(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("rules:\n- util: 10\n")
    with pytest.raises(ScenarioError, match="needs 'namespace'"):
        World().exporter(scenario_file=path)


def test_scenario_file_drives_pods_and_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("rules:\n- namespace: ml\n  util: 30\n")
    world = World()
    world.pods = [pod_json("web-1")]
    exporter = world.exporter(scenario_file=path)
    assert value_of(metrics_text(exporter, T0), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 30
    path.write_text("rules:\n- namespace: ml\n  util: 45\n")
    os.utime(path, ns=(1, 10**18))  # a new mtime even on coarse filesystem clocks
    assert value_of(metrics_text(exporter, T0), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 45
    # A broken edit keeps the last good rules instead of zeroing the demo.
    path.write_text("rules: [[[")
    os.utime(path, ns=(1, 2 * 10**18))
    assert value_of(metrics_text(exporter, T0), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 45


def test_configmap_rules_override_file_rules_and_bad_configmaps_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("rules:\n- namespace: ml\n  util: 30\n")
    world = World()
    world.pods = [pod_json("web-1")]
    world.configmaps = [
        scenario_cm("ml", "rules:\n- util: 70\n"),
        scenario_cm("ml", "rules: nope", uid="bad"),
    ]
    world.configmaps[1]["metadata"]["name"] = "zz-broken"
    assert value_of(metrics_text(world.exporter(path), T0), "DCGM_FI_DEV_GPU_UTIL", pod="web-1") == 70


def test_bad_util_annotation_is_ignored_with_a_warning() -> None:
    pods, warnings = pods_from_api([pod_json("p", annotations={"rightsizer.io/fake-gpu-util": "lots"})])
    assert pods[0].util_override is None
    assert warnings and "rightsizer.io/fake-gpu-util" in warnings[0]


def test_node_labels_give_memory_and_driver_version() -> None:
    item = node_json("n", memory="40960")
    item["metadata"]["labels"]["nvidia.com/cuda.driver.major"] = "535"
    item["metadata"]["labels"]["nvidia.com/cuda.driver.minor"] = "104"
    item["metadata"]["labels"]["nvidia.com/cuda.driver.rev"] = "05"
    (node,) = nodes_from_api([item])
    assert node.memory_mib == 40960
    assert node.driver_version == "535.104.05"


def test_rule_validation_accepts_the_documented_example() -> None:
    rule = Rule.model_validate(
        {
            "podPrefix": "web-",
            "selector": {"app": "web"},
            "series": [[0, 10], [120, 90]],
            "start": "2026-11-25T10:00:00Z",
            "memoryUsedMiB": 20000,
        }
    )
    assert rule.start == T0 and rule.memory_used_mib == 20000


# -- HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[str, World, FakeDcgmExporter]]:
    world = World()
    world.nodes = [node_json("a100-0", gpus=1), node_json("a100-1", gpus=1)]
    world.pods = [pod_json("web-1", node="a100-1")]
    exporter = world.exporter()
    server = _Server(("127.0.0.1", 0), exporter, LABEL_FLAVOURS["new"], timedelta(seconds=30))
    with serving(server) as url:
        yield url, world, exporter


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_http_serves_metrics_per_cluster_and_per_node(served: tuple[str, World, FakeDcgmExporter]) -> None:
    base, _, exporter = served
    assert get(f"{base}/metrics")[0] == 503  # nothing read yet
    assert get(f"{base}/health")[0] == 503
    exporter.refresh()
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert 'Hostname="a100-0"' in body and 'Hostname="a100-1"' in body
    status, _, body = get(f"{base}/nodes/a100-1/metrics")
    assert status == 200 and 'Hostname="a100-0"' not in body and 'pod="web-1"' in body
    assert get(f"{base}/nodes/cpu-9/metrics")[0] == 404
    assert get(f"{base}/nope")[0] == 404
    status, _, body = get(f"{base}/health")
    assert (status, body) == (200, "OK\n")


def test_fault_garbled_serves_a_body_the_exposition_parser_refuses_naming_the_line(
    served: tuple[str, World, FakeDcgmExporter],
) -> None:
    base, _, exporter = served
    exporter.refresh()
    status, _, body = get(f"{base}/nodes/a100-1/metrics?fault=garbled")
    assert status == 200 and 'pod="web-1"' in body
    with pytest.raises(ExpositionParseError, match="invalid value 'N/A'"):
        parse_exposition(body)
    assert parse_exposition(get(f"{base}/nodes/a100-1/metrics")[2]), "without fault= the body is fine"


def test_fault_explode_adds_the_asked_number_of_series(served: tuple[str, World, FakeDcgmExporter]) -> None:
    base, _, exporter = served
    exporter.refresh()
    plain = parse_exposition(get(f"{base}/nodes/a100-1/metrics")[2]).series
    exploded = parse_exposition(get(f"{base}/nodes/a100-1/metrics?fault=explode&series=300")[2]).series
    assert len(exploded) == len(plain) + 300
    assert len({s.labels.get("err_id") for s in exploded if "err_id" in s.labels}) == 300
    with pytest.raises(ExpositionParseError, match="more than 100 series"):
        parse_exposition(get(f"{base}/metrics?fault=explode&series=300")[2], max_series=100)


def test_each_request_may_ask_for_another_exporter_releases_labels(
    served: tuple[str, World, FakeDcgmExporter],
) -> None:
    base, _, exporter = served
    exporter.refresh()
    body = get(f"{base}/nodes/a100-1/metrics?labels=1.x")[2]
    assert 'dcgm_gpu_utilization{gpu="0",uuid="GPU-' in body and 'pod_name="web-1"' in body
    assert "DCGM_FI_DEV_GPU_UTIL" not in body
    assert 'pod="web-1"' in get(f"{base}/nodes/a100-1/metrics")[2]
    status, _, body = get(f"{base}/metrics?labels=newest")
    assert status == 400 and "1.x or new or old" in body


@pytest.mark.parametrize("query", ["fault=slow", "fault=explode&series=many", "fault=explode&series=9999999"])
def test_unknown_faults_are_refused(served: tuple[str, World, FakeDcgmExporter], query: str) -> None:
    base, _, exporter = served
    exporter.refresh()
    status, _, body = get(f"{base}/metrics?{query}")
    assert status == 400 and "garbled or explode or blanks" in body


def test_fault_blanks_writes_dcgms_not_supported_values_which_the_operator_refuses(
    served: tuple[str, World, FakeDcgmExporter],
) -> None:
    base, _, exporter = served
    exporter.refresh()
    body = get(f"{base}/nodes/a100-1/metrics?fault=blanks")[2]
    series = parse_exposition(body).series
    power = [s.value for s in series if s.name == "DCGM_FI_DEV_POWER_USAGE"]
    memory = [s.value for s in series if s.name == "DCGM_FI_DEV_FB_USED"]
    assert power and set(power) == {2.0**47}
    assert memory and set(memory) == {9223372036854775794.0}
    assert {s.value for s in series if s.name == "DCGM_FI_DEV_GPU_UTIL"} != set(), "utilisation is kept"
    read = inspect_text(body, AUTO, "Auto", datetime.now(UTC))
    assert read.rejected == {"sentinel": len(power) + len(memory)}


def test_health_turns_unhealthy_when_the_cluster_was_not_read_recently(
    served: tuple[str, World, FakeDcgmExporter],
) -> None:
    base, world, exporter = served
    exporter.refresh()
    world.now += timedelta(minutes=5)
    status, _, body = get(f"{base}/health")
    assert status == 503 and "last read" in body


# -- command line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:19400", ("127.0.0.1", 19400)),
        ("localhost:9400", ("127.0.0.1", 9400)),
        ("[::1]:9400", ("::1", 9400)),
    ],
)
def test_listen_accepts_loopback_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text)[:2] == expected


@pytest.mark.parametrize(
    "text", ["0.0.0.0:9400", "10.0.0.1:9400", "127.0.0.1", "127.0.0.1:http", "host:9400"]
)
def test_listen_refuses_anything_but_loopback_host_port(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


def test_cli_subcommand_takes_the_documented_flags() -> None:
    parser = argparse.ArgumentParser()
    fake_dcgm_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "fake-dcgm-exporter",
            "--kubeconfig",
            "k",
            "--listen",
            "127.0.0.1:19400",
            "--labels",
            "old",
            "--scenario",
            "s.yaml",
            "--interval",
            "2",
        ]
    )
    assert (args.kubeconfig, args.listen, args.labels, args.scenario, args.interval) == (
        "k",
        "127.0.0.1:19400",
        "old",
        Path("s.yaml"),
        2.0,
    )
    assert callable(args.func)
