"""The fake dcgm-exporter's app gauges (scenario rules' appMetrics): parsing, which rule wins, and
the text beside the DCGM series, read back with prometheus_client's parser and our own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.core.errors import ExpositionParseError
from rightsizer.devcluster.dcgm_text import (
    APP_HELP,
    LABEL_FLAVOURS,
    LabelNames,
    format_app_value,
    render,
    render_app_metrics,
)
from rightsizer.devcluster.exporter_state import FakeDcgmExporter
from rightsizer.devcluster.fake_dcgm import _Server
from rightsizer.devcluster.gpu_devices import GpuPod
from rightsizer.devcluster.scenario_rules import (
    ScenarioError,
    load_scenario,
    pod_activity,
    pod_app_metrics,
)
from tests.support.serving import serving
from tests.unit.test_fake_dcgm import T0, World, get, gpu_pod, node_json, pod_json, rules, scenario_cm

pytestmark = pytest.mark.unit

WAITING = "vllm:num_requests_waiting"
CACHE = "vllm:gpu_cache_usage_perc"
CHAT_RULES = (
    "rules:\n"
    "- selector: {app: chat}\n  util: 5\n"
    f'- podPrefix: chat-\n  appMetrics: {{"{WAITING}": 12, "{CACHE}": 0.4}}\n'
)
Series = dict[frozenset[tuple[str, str]], float]


def chat_world() -> World:
    """chat-0 holds two GPUs and chat-1 one, both matched by CHAT_RULES; web-1 is matched by none."""
    world = World()
    world.nodes = [node_json("a100-0", gpus=4)]
    world.pods = [
        pod_json("chat-0", gpus=2, labels={"app": "chat"}),
        pod_json("chat-1", labels={"app": "chat"}),
        pod_json("web-1"),
    ]
    world.configmaps = [scenario_cm("ml", CHAT_RULES)]
    return world


def full_text(exporter: FakeDcgmExporter, names: LabelNames = LABEL_FLAVOURS["new"]) -> str:
    view = exporter.refresh()
    return render(view.readings(T0), names) + render_app_metrics(view.app_readings(), names)


def series_of(text: str, metric: str) -> Series:
    """prometheus_client's reading of `metric`: labels → value."""
    return {
        frozenset(sample.labels.items()): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    }


# -- rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sets_util"),
    [
        (f'rules:\n- appMetrics: {{"{WAITING}": 12}}\n', False),
        (f'rules:\n- util: 40\n  appMetrics: {{"{WAITING}": 12}}\n', True),
        (f'rules:\n- series: [[0, 10]]\n  appMetrics: {{"{WAITING}": 12}}\n', True),
        (f'rules:\n- gpuUtil: [30, 0]\n  appMetrics: {{"{WAITING}": 12}}\n', True),
    ],
)
def test_a_rule_may_give_app_metrics_alone_or_beside_one_utilisation_shape(
    text: str, sets_util: bool
) -> None:
    (rule,) = load_scenario(text, "test", "ml").rules
    assert rule.app_metrics == {WAITING: 12.0}
    assert rule.sets_util is sets_util


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            'appMetrics: {"vllm-waiting": 1}',
            "rules.1.appMetrics: Value error, appMetrics name 'vllm-waiting' ",
        ),
        ('appMetrics: {"9lives": 1}', "'9lives' is not a Prometheus metric name"),
        ('appMetrics: {"": 1}', "'' is not a Prometheus metric name"),
        ("appMetrics: {DCGM_FI_DEV_GPU_UTIL: 5}", "is one of the exporter's own DCGM names"),
        ("appMetrics: {dcgm_gpu_utilization: 5}", "is one of the exporter's own DCGM names"),
        (
            'appMetrics: {"vllm:x": -1}',
            "rules.1.appMetrics.vllm:x: Input should be greater than or equal to 0",
        ),
        ('appMetrics: {"vllm:x": .inf}', "rules.1.appMetrics.vllm:x: Input should be a finite number"),
        ('appMetrics: {"vllm:x": .nan}', "rules.1.appMetrics.vllm:x: Input should be a finite number"),
        ('appMetrics: {"vllm:x": true}', "rules.1.appMetrics.vllm:x: Input should be a valid number"),
        ('appMetrics: {"vllm:x": "12"}', "rules.1.appMetrics.vllm:x: Input should be a valid number"),
        ("appMetrics: {}", "rules.1.appMetrics: Value error, appMetrics needs at least one"),
        ("appMetrics: [12]", "rules.1.appMetrics: Input should be a valid dictionary"),
        ('appMetrics: {"vllm:x": 1}\n  memoryUsedMiB: 100', "memoryUsedMiB goes with the GPU's util"),
        ('appMetrics: {"vllm:x": 1}\n  util: 1\n  series: [[0, 1]]', "exactly one of util or series"),
        (
            "podPrefix: a",
            "rules.1: Value error, give exactly one of util or series or gpuUtil, or appMetrics",
        ),
    ],
)
def test_bad_app_metrics_are_refused_naming_the_rule_and_field(bad: str, problem: str) -> None:
    with pytest.raises(ScenarioError, match="invalid fake DCGM scenario") as caught:
        load_scenario(f"rules:\n- util: 10\n- {bad}\n", "ConfigMap ml/fake-dcgm-scenario", "ml")
    assert problem in str(caught.value)


def chat_pod(override: float | None = None) -> GpuPod:
    return gpu_pod("chat-0", labels={"app": "chat"}, override=override)


def test_utilisation_comes_from_the_last_rule_giving_a_shape_and_each_gauge_from_the_last_naming_it() -> None:
    text = (
        "rules:\n"
        '- util: 70\n  memoryUsedMiB: 20000\n  appMetrics: {"a": 1, "b": 2}\n'
        '- podPrefix: chat-\n  appMetrics: {"a": 5}\n'
        '- podPrefix: nope-\n  util: 99\n  appMetrics: {"a": 99}\n'
    )
    assert pod_activity(chat_pod(), rules(text), T0) == (70, 20000)
    assert pod_app_metrics(chat_pod(), rules(text)) == {"a": 5, "b": 2}
    # A later util-only rule takes the utilisation (and its memory) and leaves the gauges alone.
    later = text + "- selector: {app: chat}\n  util: 20\n"
    assert pod_activity(chat_pod(), rules(later), T0) == (20, None)
    assert pod_app_metrics(chat_pod(), rules(later)) == {"a": 5, "b": 2}


def test_the_util_annotation_beats_rules_but_keeps_the_app_gauges() -> None:
    active = rules(f'rules:\n- util: 10\n  appMetrics: {{"{WAITING}": 3}}\n')
    assert pod_activity(chat_pod(override=55), active, T0)[0] == 55
    assert pod_app_metrics(chat_pod(override=55), active) == {WAITING: 3}


def test_rules_of_another_namespace_give_no_app_gauges() -> None:
    assert pod_app_metrics(chat_pod(), rules(f'rules:\n- appMetrics: {{"{WAITING}": 3}}\n', "other")) == {}


def test_new_app_gauge_values_do_not_restart_the_rules_series() -> None:
    world = World()
    world.pods = [pod_json("chat-0")]
    world.configmaps = [scenario_cm("ml", 'rules:\n- series: [[0, 10], [60, 90]]\n  appMetrics: {"a": 1}\n')]
    exporter = world.exporter()
    exporter.refresh()
    world.now = T0 + timedelta(seconds=61)
    world.configmaps = [scenario_cm("ml", 'rules:\n- series: [[0, 10], [60, 90]]\n  appMetrics: {"a": 7}\n')]
    view = exporter.refresh()
    assert view.readings(world.now)[0].util == 90
    assert [(r.pod, r.value) for r in view.app_readings()] == [("chat-0", 7)]


# -- the text --------------------------------------------------------------------------------------


def test_app_gauges_are_written_exactly_once_per_pod_after_the_dcgm_series() -> None:
    text = full_text(chat_world().exporter())
    lines = text.splitlines()
    assert lines[lines.index(f"# HELP {CACHE} {APP_HELP}") :] == [
        f"# HELP {CACHE} {APP_HELP}",
        f"# TYPE {CACHE} gauge",
        f'{CACHE}{{namespace="ml",pod="chat-0"}} 0.4',
        f'{CACHE}{{namespace="ml",pod="chat-1"}} 0.4',
        f"# HELP {WAITING} {APP_HELP}",
        f"# TYPE {WAITING} gauge",
        f'{WAITING}{{namespace="ml",pod="chat-0"}} 12',
        f'{WAITING}{{namespace="ml",pod="chat-1"}} 12',
    ]
    # chat-0's two GPUs are two DCGM series; its utilisation is the earlier rule's.
    assert len([ln for ln in lines if ln.startswith("DCGM_FI_DEV_GPU_UTIL{") and 'pod="chat-0"' in ln]) == 2
    assert all(ln.endswith(" 5") for ln in lines if ln.startswith("DCGM_FI_DEV_GPU_UTIL{") and "chat-" in ln)


@pytest.mark.parametrize("flavour", sorted(LABEL_FLAVOURS))
def test_app_gauges_carry_the_flavours_namespace_and_pod_labels_and_parse_as_gauges(flavour: str) -> None:
    names = LABEL_FLAVOURS[flavour]
    text = full_text(chat_world().exporter(), names)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert (families[WAITING].type, families[WAITING].documentation) == ("gauge", APP_HELP)
    assert series_of(text, WAITING) == {
        frozenset({(names.namespace, "ml"), (names.pod, "chat-0")}): 12,
        frozenset({(names.namespace, "ml"), (names.pod, "chat-1")}): 12,
    }
    assert series_of(text, CACHE) == {labels: 0.4 for labels in series_of(text, WAITING)}
    # Our parser reads the same series as prometheus_client's.
    ours = {(s.name, frozenset(s.labels.items())): s.value for s in parse_exposition(text).series}
    theirs = {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in families.values()
        for sample in family.samples
    }
    assert ours == theirs


def test_a_pod_the_exporter_cannot_map_keeps_its_app_gauges() -> None:
    world = chat_world()
    world.pods[1]["metadata"]["annotations"] = {"rightsizer.io/fake-dcgm-unmapped": "true"}
    text = full_text(world.exporter())
    assert not [ln for ln in text.splitlines() if ln.startswith("DCGM_") and 'pod="chat-1"' in ln]
    assert series_of(text, WAITING)[frozenset({("namespace", "ml"), ("pod", "chat-1")})] == 12


def test_no_app_rule_writes_no_app_gauges() -> None:
    world = chat_world()
    world.configmaps = [scenario_cm("ml", "rules:\n- util: 50\n")]
    assert world.exporter().refresh().app_readings() == []
    assert render_app_metrics([], LABEL_FLAVOURS["new"]) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.0, "12"), (0.0, "0"), (0.4, "0.4"), (1.5e20, "1.5e+20"), (2.0**60, "1.152921504606847e+18")],
)
def test_app_values_are_written_as_client_libraries_write_gauges(value: float, text: str) -> None:
    assert format_app_value(value) == text


# -- HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
def chat_served() -> Iterator[tuple[str, FakeDcgmExporter]]:
    world = chat_world()
    world.nodes.append(node_json("a100-1", gpus=1))
    world.pods.append(pod_json("chat-9", node="a100-1", labels={"app": "chat"}))
    exporter = world.exporter()
    exporter.refresh()
    server = _Server(("127.0.0.1", 0), exporter, LABEL_FLAVOURS["new"], timedelta(seconds=30))
    with serving(server) as url:
        yield url, exporter


def pods_waiting(body: str) -> set[str]:
    return {dict(labels)["pod"] for labels in series_of(body, WAITING)}


def test_http_serves_app_gauges_per_cluster_and_per_node(chat_served: tuple[str, FakeDcgmExporter]) -> None:
    base, _ = chat_served
    assert pods_waiting(get(f"{base}/metrics")[2]) == {"chat-0", "chat-1", "chat-9"}
    assert pods_waiting(get(f"{base}/nodes/a100-1/metrics")[2]) == {"chat-9"}
    assert "pod_name=" in get(f"{base}/metrics?labels=old")[2].split(f"# HELP {WAITING}")[1]


@pytest.mark.parametrize("fault", ["blanks", "explode"])
def test_faults_that_keep_the_text_valid_keep_the_app_gauges(
    chat_served: tuple[str, FakeDcgmExporter], fault: str
) -> None:
    base, _ = chat_served
    body = get(f"{base}/nodes/a100-0/metrics?fault={fault}&series=50")[2]
    assert series_of(body, WAITING) == series_of(get(f"{base}/nodes/a100-0/metrics")[2], WAITING)
    dcgm = [s for s in parse_exposition(body).series if s.name.startswith("DCGM_")]
    if fault == "blanks":
        assert {s.value for s in dcgm if s.name == "DCGM_FI_DEV_POWER_USAGE"} == {2.0**47}
    else:
        assert len([s for s in dcgm if "err_id" in s.labels]) == 50


def test_fault_garbled_is_still_refused_with_app_gauges_after_it(
    chat_served: tuple[str, FakeDcgmExporter],
) -> None:
    base, _ = chat_served
    body = get(f"{base}/nodes/a100-0/metrics?fault=garbled")[2]
    assert f'{WAITING}{{namespace="ml",pod="chat-0"}} 12' in body.splitlines()
    with pytest.raises(ExpositionParseError, match="invalid value 'N/A'"):
        parse_exposition(body)
