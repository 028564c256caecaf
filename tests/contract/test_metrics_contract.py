"""One contract for every GpuMetricsSource, checked without a cluster.

The same fake GPU fleet (the fake exporter's own renderer, driven by scenario rules) feeds all
sources: the DCGM source scrapes its text, the Prometheus source queries a stub that stores those
scrapes like a TSDB and answers our selectors, and the fake source is seeded from the readings. Every
source must then give the same answers. The e2e twin of this file runs against the real thing.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.adapters.metrics.base import AUTO_SIGNAL, GPU_UTIL, GR_ENGINE_ACTIVE, GpuMetricsSource
from rightsizer.adapters.metrics.dcgm import DcgmSource
from rightsizer.adapters.metrics.exposition import ScrapedSeries, parse_exposition
from rightsizer.adapters.metrics.fake import FakeGpuMetricsSource
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.devcluster.dcgm_text import LABEL_FLAVOURS, render
from rightsizer.devcluster.gpu_devices import GpuNode, GpuPod, assign_gpus
from rightsizer.devcluster.scenario import gpu_readings
from rightsizer.devcluster.scenario_rules import ActiveRule, load_scenario
from tests.support.metrics import workload_samples

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
STEP = 15
END = 300
NOW = T0 + timedelta(seconds=END)

NODES = (GpuNode("a100-0", 2, "NVIDIA-A100-SXM4-80GB", 81920), GpuNode("l4-0", 4, "NVIDIA-L4", 23034))
POD_SPECS = (
    ("ml", "web-1", "a100-0", 1),
    ("ml", "web-2", "a100-0", 1),
    ("ml", "train-0", "l4-0", 2),
    ("ml", "quiet-0", "l4-0", 1),
    ("other", "web-1", "l4-0", 1),
)
SCENARIOS = {
    "ml": "rules:\n- podPrefix: web-\n  util: 73\n"
    "- podPrefix: train-\n  series: [[0, 20], [240, 80]]\n  memoryUsedMiB: 20000\n",
    "other": "rules:\n- util: 10\n",
}


@dataclass
class FleetWorld:
    """The fake fleet over time; `gone_at` makes a pod vanish (deleted) from that second on."""

    gone_at: dict[tuple[str, str], int] = field(default_factory=dict)

    def pods(self, second: int) -> list[GpuPod]:
        return [
            GpuPod(f"{ns}/{name}", ns, name, node, T0, (("main", gpus),))
            for ns, name, node, gpus in POD_SPECS
            if (ns, name) not in self.gone_at or second < self.gone_at[(ns, name)]
        ]

    def readings(self, second: int) -> list[Any]:
        pods = self.pods(second)
        # Assign from the full pod list so a pod keeps its GPU index when another one goes.
        assignment = assign_gpus(NODES, self.pods(0), {})
        rules = [
            ActiveRule(ns, rule, T0)
            for ns, text in SCENARIOS.items()
            for rule in load_scenario(text, "test", ns).rules
        ]
        return gpu_readings(
            NODES, {p.uid: p for p in pods}, assignment, rules, T0 + timedelta(seconds=second)
        )

    def body(self, second: int, flavour: str) -> str:
        return render(self.readings(second), LABEL_FLAVOURS[flavour])


class PromStub:
    """Answers `{matchers}[Ns]` instant queries from stored scrapes, like Prometheus' TSDB would."""

    _QUERY = re.compile(r"^\{(.*)\}\[(\d+)s\]$", re.DOTALL)
    _MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        self.queries: list[str] = []

    def ingest(self, at: datetime, scraped: list[ScrapedSeries]) -> None:
        for item in scraped:
            labels = {**item.labels, "__name__": item.name, "instance": "127.0.0.1:9400", "job": "dcgm"}
            self.series.setdefault(tuple(sorted(labels.items())), []).append((at.timestamp(), item.value))

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.queries.append(query)
        match = self._QUERY.match(query)
        assert match, f"the stub only understands range selectors, got {query!r}"
        matchers = [
            (name, op, ast.literal_eval(f'"{value}"')) for name, op, value in self._MATCHER.findall(match[1])
        ]
        start = self.now.timestamp() - int(match[2])
        result = []
        for key, points in self.series.items():
            labels = dict(key)
            if all(_matches(labels.get(name, ""), op, value) for name, op, value in matchers):
                window = [[t, _text(v)] for t, v in points if start < t <= self.now.timestamp()]
                if window:
                    result.append({"metric": labels, "values": window})
        return result


def _matches(actual: str, op: str, expected: str) -> bool:
    if op == "=":
        return actual == expected
    if op == "!=":
        return actual != expected
    hit = re.fullmatch(expected, actual) is not None
    return hit if op == "=~" else not hit


def _text(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(value)


@dataclass
class Built:
    source: GpuMetricsSource
    queries: Callable[[], int]
    next_pass: Callable[[], None] = lambda: None


def build(kind: str, world: FleetWorld) -> Built:
    """A source that has watched the fleet from T0 to NOW, one scrape every STEP seconds."""
    seconds = range(0, END + 1, STEP)
    if kind.startswith("prometheus"):
        flavour = kind.split("-")[1]
        stub = PromStub(NOW)
        for s in seconds:
            stub.ingest(T0 + timedelta(seconds=s), list(parse_exposition(world.body(s, flavour)).series))
        prom = PrometheusSource(stub)
        return Built(prom, lambda: prom.queries_sent)
    if kind.startswith("dcgm"):
        flavour = kind.split("-")[1]
        clock = Clock(T0)
        dcgm = DcgmSource(
            ["http://exporter/metrics"],
            fetch=lambda url, timeout: world.body(int((clock.now - T0).total_seconds()), flavour),
            clock=clock,
            cache_seconds=1,
        )
        for s in seconds:  # the operator's passes, each scraping once
            clock.now = T0 + timedelta(seconds=s)
            dcgm.fleet_samples()

        def next_pass() -> None:
            clock.now += timedelta(seconds=STEP)

        return Built(dcgm, lambda: dcgm.scrapes, next_pass)
    fake = FakeGpuMetricsSource(clock=lambda: NOW)
    for s in seconds:
        for reading in world.readings(s):
            if reading.holder is None:
                continue
            holder, at = reading.holder, T0 + timedelta(seconds=s)
            for signal in (GPU_UTIL, GR_ENGINE_ACTIVE):
                fake.record(
                    holder.namespace,
                    holder.pod,
                    reading.util,
                    at=at,
                    signal=signal,
                    gpu=reading.uuid,
                    memory_used_mib=reading.fb_used_mib,
                    power_watts=reading.power_watts,
                )
    return Built(fake, lambda: len(fake.queries))


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


KINDS = ["prometheus-new", "prometheus-old", "dcgm-new", "dcgm-old", "fake"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.fixture
def source(kind: str) -> GpuMetricsSource:
    return build(kind, FleetWorld()).source


def test_reports_utilisation_for_exactly_the_requested_pods(source: GpuMetricsSource) -> None:
    samples = workload_samples(source, "ml", ["web-1", "web-2", "quiet-0", "ghost"])
    assert set(samples) == {"web-1", "web-2", "quiet-0"}  # no series: unknown, not idle
    assert samples["web-1"].value == pytest.approx(73)
    assert samples["web-2"].value == pytest.approx(73)
    assert samples["quiet-0"].value == 0


def test_same_pod_name_in_another_namespace_does_not_leak(source: GpuMetricsSource) -> None:
    assert workload_samples(source, "ml", ["web-1"])["web-1"].value == pytest.approx(73)
    assert workload_samples(source, "other", ["web-1"])["web-1"].value == pytest.approx(10)


def test_graphics_engine_ratio_is_reported_in_percent(source: GpuMetricsSource) -> None:
    samples = workload_samples(source, "ml", ["web-1"], signal=GR_ENGINE_ACTIVE)
    assert samples["web-1"].value == pytest.approx(73)


def test_samples_carry_the_real_sample_time(source: GpuMetricsSource) -> None:
    sample = workload_samples(source, "ml", ["web-1"])["web-1"]
    assert sample.timestamp == NOW
    assert sample.is_fresh(NOW, max_age_seconds=60)


def test_multi_gpu_pod_counts_its_gpus_peak_memory_and_total_power(source: GpuMetricsSource) -> None:
    sample = workload_samples(source, "ml", ["train-0"])["train-0"]
    assert sample.gpus == 2
    assert sample.value == pytest.approx(80)
    assert sample.memory_used_mib == 20000
    assert sample.power_watts == pytest.approx(2 * (16 + (72 - 16) * 0.8))  # two L4s at 80%


def test_single_gpu_power_follows_the_a100_curve(source: GpuMetricsSource) -> None:
    sample = workload_samples(source, "ml", ["web-1"])["web-1"]
    assert sample.power_watts == pytest.approx(60 + 340 * 0.73)
    assert sample.memory_used_mib == 512


@pytest.mark.parametrize(("over", "expected"), [("avg", (3 * 20 + 5 * 80) / 8), ("max", 80), ("min", 20)])
def test_window_reduces_the_points_inside_it(source: GpuMetricsSource, over: Any, expected: float) -> None:
    # train-0 ran at 20% until second 240, then 80%; a 120 s window at 300 holds 3 + 5 scrapes.
    sample = workload_samples(source, "ml", ["train-0"], window_seconds=120, over=over)["train-0"]
    assert sample.value == pytest.approx(expected)
    assert sample.since == T0 + timedelta(seconds=195)
    assert sample.points == 8
    assert sample.memory_used_mib == 20000


def test_fleet_samples_cover_every_gpu_pod_and_no_idle_gpu(source: GpuMetricsSource) -> None:
    fleet = source.fleet_samples()
    assert set(fleet) == {
        ("ml", "web-1"),
        ("ml", "web-2"),
        ("ml", "train-0"),
        ("ml", "quiet-0"),
        ("other", "web-1"),
    }
    assert fleet[("other", "web-1")].value == pytest.approx(10)


def test_a_pass_costs_the_same_whatever_the_number_of_workloads(kind: str) -> None:
    built = build(kind, FleetWorld())
    built.next_pass()
    before = built.queries()
    built.source.fleet_samples()
    one_pass = built.queries() - before
    assert one_pass == 1  # Prometheus: one query whatever the label shapes; DCGM: one scrape
    # Workloads reading other signals or windows fetch their own fleet samples in the same pass.
    for signal, window in ((GR_ENGINE_ACTIVE, 0), (AUTO_SIGNAL, 0), (GPU_UTIL, 120)):
        built.source.fleet_samples(signal, window)
    if kind.startswith("dcgm"):
        assert built.queries() - before == 1  # every fetch reused the pass's scrape


def test_a_vanished_pod_keeps_its_old_timestamp_so_it_reads_stale_not_idle(kind: str) -> None:
    world = FleetWorld(gone_at={("ml", "web-2"): 240})
    sample = workload_samples(build(kind, world).source, "ml", ["web-2"])["web-2"]
    assert sample.timestamp == T0 + timedelta(seconds=225)
    assert sample.value == pytest.approx(73)
    assert not sample.is_fresh(NOW, max_age_seconds=60)


def test_bad_window_arguments_are_refused(source: GpuMetricsSource) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        source.fleet_samples(window_seconds=-1)
    with pytest.raises(ValueError, match="over"):
        source.fleet_samples(over="median")  # type: ignore[arg-type]
