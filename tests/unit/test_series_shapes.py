"""Exporter texts in every shape real clusters produce, read by each source the same way.

The samples follow dcgm-exporter's documented formats: its 2.x+ labels, 1.x names with
--use-old-namespace labels and lower-case uuid, MIG instances (GPU_I_ID / GPU_I_PROFILE), unallocated
GPUs with empty or no pod labels, and what Prometheus stores when a ServiceMonitor scrapes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rightsizer.adapters.metrics.dcgm import DcgmSource
from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.adapters.metrics.gathering import RawSeries, gather
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.adapters.metrics.readings import Rejection
from rightsizer.adapters.metrics.series_shapes import AUTO, InvalidPodLabels, LabelShape
from rightsizer.runtime.settings import Settings, SettingsError
from tests.support.metrics import workload_samples

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SHAPES = Path(__file__).parent.parent / "data" / "exporter_shapes"
HONOR_LABELS_FALSE = (SHAPES / "honor_labels_false.prom").read_text()
OLD_EXPORTER = (SHAPES / "old_exporter.prom").read_text()
MIXED = (SHAPES / "unallocated_and_mig.prom").read_text()
SENTINELS = (SHAPES / "sentinels.prom").read_text()


def raw(text: str) -> list[RawSeries]:
    return [RawSeries(s.name, s.labels, [(NOW, s.value)]) for s in parse_exposition(text).series]


def owners(text: str, signal: str = "DCGM_FI_DEV_GPU_UTIL", shape: LabelShape = AUTO) -> dict[str, float]:
    gathered = gather(raw(text), signal, shape)
    return {f"{g.namespace}/{g.pod}": g.signal[-1][1] for g in gathered.gpus if g.signal}


# -- label shapes ------------------------------------------------------------------------------------


def test_honor_labels_false_attributes_the_workload_and_never_the_exporter_pod() -> None:
    gathered = gather(raw(HONOR_LABELS_FALSE), "DCGM_FI_DEV_GPU_UTIL", AUTO)
    assert owners(HONOR_LABELS_FALSE) == {"ml/train-0": 71}
    assert gathered.unattributed == 1  # the unallocated GPU, labelled with the exporter's pod
    assert gathered.shapes == {"exported": 1}


def test_an_exporter_on_a_node_with_no_allocated_gpu_is_known_by_its_scrape_job() -> None:
    job = 'job="gpu-operator/nvidia-dcgm-exporter",endpoint="gpu-metrics",namespace="gpu-operator"'
    text = (
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-a",exported_namespace="ml",exported_pod="train-0",'
        f'pod="dcgm-node-1",{job}}} 71\n'
        # The DaemonSet's pod on node-2, where nothing holds a GPU: its series name no other pod.
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-b",pod="dcgm-node-2",{job}}} 0\n'
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="1",UUID="GPU-c",pod="dcgm-node-2",{job}}} 0\n'
    )
    gathered = gather(raw(text), "DCGM_FI_DEV_GPU_UTIL", AUTO)
    assert owners(text) == {"ml/train-0": 71}
    assert gathered.unattributed == 2


def test_the_new_shape_alone_reads_the_exporter_pod_which_is_why_auto_is_the_default() -> None:
    assert owners(HONOR_LABELS_FALSE, shape=LabelShape.parse("new")) == {
        "gpu-operator/nvidia-dcgm-exporter-x7k2p": 0
    }
    assert owners(HONOR_LABELS_FALSE, shape=LabelShape.parse("exported")) == {"ml/train-0": 71}


def test_old_exporters_are_read_by_their_1x_names_and_labels() -> None:
    assert owners(OLD_EXPORTER) == {"ml/old-0": 42}
    assert owners(OLD_EXPORTER, signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE") == {"ml/old-0": 42}
    gathered = gather(raw(OLD_EXPORTER), "DCGM_FI_DEV_GPU_UTIL", AUTO)
    assert [g.memory for g in gathered.gpus] == [[(NOW, 2048)]]
    assert gathered.shapes == {"old": 1}


def test_unallocated_gpus_with_empty_or_no_pod_labels_belong_to_no_pod() -> None:
    gathered = gather(raw(MIXED), "DCGM_FI_DEV_GPU_UTIL", AUTO)
    assert gathered.gpus == [] and gathered.unattributed == 2


def test_mig_instances_of_one_gpu_are_two_gpus_of_two_pods() -> None:
    assert owners(MIXED, signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE") == {"ml/mig-a": 25, "ml/mig-b": 80}


def test_auto_reads_gr_engine_active_where_reported_and_gpu_util_elsewhere() -> None:
    assert owners(MIXED, signal="Auto") == {"ml/mig-a": 25, "ml/mig-b": 80}
    for source in sources(MIXED + HONOR_LABELS_FALSE.replace('UUID="GPU-a"', 'UUID="GPU-z"')):
        fleet = source.fleet_samples(signal="Auto")
        assert {k[1]: (s.value, s.signal) for k, s in fleet.items()} == {
            "mig-a": (25, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
            "mig-b": (80, "DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
            "train-0": (71, "DCGM_FI_DEV_GPU_UTIL"),
        }, source.name


def test_a_custom_shape_reads_only_the_labels_it_names() -> None:
    text = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",k8s_ns="ml",k8s_pod="p",namespace="x",pod="y"} 9\n'
    shape = LabelShape.parse("namespace=k8s_ns,pod=k8s_pod")
    assert owners(text, shape=shape) == {"ml/p": 9}
    assert shape.name == "namespace=k8s_ns,pod=k8s_pod,container=container"


@pytest.mark.parametrize("text", ["newest", "namespace=a", "pod=b,namespace=a,node=c", ""])
def test_pod_labels_that_are_no_shape_are_refused_with_the_choices(text: str) -> None:
    with pytest.raises(InvalidPodLabels, match="auto, new, old, exported"):
        LabelShape.parse(text)


def test_the_setting_refuses_a_bad_shape_and_a_selector_that_is_not_label_matchers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIGHTSIZER_DCGM__POD_LABELS", "newest")
    with pytest.raises(SettingsError, match=r"RIGHTSIZER_DCGM__POD_LABELS.*auto, new"):
        Settings.load()
    monkeypatch.delenv("RIGHTSIZER_DCGM__POD_LABELS")
    with pytest.raises(SettingsError, match=r"dcgm.pod_labels .*auto, new"):
        Settings.load(dcgm={"pod_labels": "newest"})  # the flag, refused the same way
    monkeypatch.setenv("RIGHTSIZER_PROMETHEUS__SERIES_SELECTOR", 'job="a"} or vector(1)')
    with pytest.raises(SettingsError, match="RIGHTSIZER_PROMETHEUS__SERIES_SELECTOR"):
        Settings.load()


# -- values that are not readings --------------------------------------------------------------------


def test_dcgm_blanks_and_impossible_values_are_missing_and_counted() -> None:
    seen: list[Rejection] = []
    gathered = gather(raw(SENTINELS), "DCGM_FI_DEV_GPU_UTIL", AUTO, seen.append)
    by_pod = {g.pod: g for g in gathered.gpus}
    # p: the utilisation stands; the blank memory and power are unknown, never a reading or a cost.
    assert by_pod["p"].signal == [(NOW, 35)]
    assert by_pod["p"].memory == [] and by_pod["p"].power == []
    # q: a blank utilisation, r: 140% and 1650 W on a 400 W GPU: refused, and the GPU is marked so.
    assert by_pod["q"].signal == [] and by_pod["q"].signal_refused
    assert by_pod["r"].signal == [] and by_pod["r"].power == []
    assert sorted(seen) == sorted(
        [
            Rejection.SENTINEL,
            Rejection.SENTINEL,
            Rejection.SENTINEL,
            Rejection.OUT_OF_RANGE,
            Rejection.ABOVE_RATED_POWER,
        ]
    )


def test_a_pod_with_a_refused_gpu_is_unknown_not_idle() -> None:
    source = DcgmSource(["http://x/metrics"], fetch=lambda url, timeout: SENTINELS, clock=lambda: NOW)
    samples = workload_samples(source, "ml", ["p", "q", "r"])
    assert set(samples) == {"p"}
    assert samples["p"].memory_used_mib is None and samples["p"].power_watts is None


def test_a_ratio_above_one_is_refused() -> None:
    text = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-a",namespace="ml",pod="p"} 1.7\n'
    assert owners(text, signal="DCGM_FI_PROF_GR_ENGINE_ACTIVE") == {}


# -- the same text through every source ---------------------------------------------------------------


class Matrix:
    """A Prometheus answering range queries with the series of an exposition text."""

    def __init__(self, text: str) -> None:
        self.series = parse_exposition(text).series
        self.queries: list[str] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.queries.append(query)
        return [
            {"metric": {"__name__": s.name, **s.labels}, "values": [[NOW.timestamp(), str(s.value)]]}
            for s in self.series
        ]


def sources(text: str) -> Iterator[Any]:
    yield PrometheusSource(Matrix(text))
    yield DcgmSource(["http://x/metrics"], fetch=lambda url, timeout: text, clock=lambda: NOW)


@pytest.mark.parametrize("text", [HONOR_LABELS_FALSE, OLD_EXPORTER], ids=["honor-labels-false", "old"])
def test_prometheus_and_the_direct_scrape_read_every_shape_alike(text: str) -> None:
    expected = owners(text)
    for source in sources(text):
        fleet = source.fleet_samples()
        assert {f"{ns}/{pod}": s.value for (ns, pod), s in fleet.items()} == expected, source.name


def test_a_pods_busiest_gpu_is_kept_beside_its_mean() -> None:
    lines = [
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}",UUID="GPU-{i}",namespace="ml",pod="train-0"}} {30 if i == 5 else 0}'
        for i in range(8)
    ]
    text = "\n".join(lines) + "\n"
    for source in sources(text):
        sample = source.fleet_samples()[("ml", "train-0")]
        assert (sample.gpus, sample.value, sample.peak) == (8, 3.75, 30), source.name


# -- shared GPUs -------------------------------------------------------------------------------------

TIME_SLICED = """\
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-s",Hostname="n",namespace="web",pod="chat-0"} 64
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-s",Hostname="n",namespace="batch",pod="etl-0"} 64
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-t",Hostname="n",namespace="web",pod="embed-0"} 12
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="2",UUID="GPU-m",GPU_I_ID="1",namespace="web",pod="mig-0"} 0.2
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="2",UUID="GPU-m",GPU_I_ID="2",namespace="web",pod="mig-1"} 0.3
"""


def test_pods_named_by_one_physical_gpu_are_marked_shared_and_mig_instances_are_not() -> None:
    for source in sources(TIME_SLICED):
        fleet = source.fleet_samples(signal="Auto")
        shared = {f"{ns}/{pod}": s.shared for (ns, pod), s in fleet.items()}
        assert shared == {
            "web/chat-0": True,
            "batch/etl-0": True,
            "web/embed-0": False,
            "web/mig-0": False,
            "web/mig-1": False,
        }, source.name
