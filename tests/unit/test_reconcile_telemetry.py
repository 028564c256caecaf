"""The operator measures itself: reconcile histograms (wall clock, and its own CPU without the I/O),
and one fleet query per pass however the pass's threads interleave."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.devcluster.memory_cluster import MemoryCluster
from rightsizer.runtime.io_time import IoTime
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workload_memory import FleetCache

pytestmark = pytest.mark.unit


# -- the exposition -------------------------------------------------------------------------------------


def test_the_operator_exports_both_reconcile_histograms_in_valid_exposition_format() -> None:
    text = Telemetry().render()
    names = {s.name for s in parse_exposition(text).series}
    for histogram in ("rightsizer_reconcile_duration_seconds", "rightsizer_reconcile_cpu_seconds"):
        assert {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"} <= names
    # Its own memory, CPU and file descriptors, which the live benchmark reads.
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"} <= names


def test_counters_only_go_up_and_gauges_are_not_counters() -> None:
    t = Telemetry()
    t.decisions.inc("ScaleUp", "UtilizationVsTarget")
    with pytest.raises(ValueError):
        t.decisions.inc("ScaleUp", "UtilizationVsTarget", by=-1)
    with pytest.raises(TypeError):
        t.decisions.set(0, "ScaleUp", "UtilizationVsTarget")
    assert t.decisions.value("ScaleUp", "UtilizationVsTarget") == 1
    assert 'rightsizer_decisions_total{action="ScaleUp",reason="UtilizationVsTarget"} 1.0' in t.render()


def test_a_deleted_workloads_series_are_dropped_and_no_one_elses() -> None:
    t = Telemetry()
    for workload in ("chat", "embed"):
        t.workload_gpu_utilization.set(50, "ml", workload)
        t.workload_cost_per_hour.set(2, "ml", workload, "EUR")
    t.forget_workload("ml", "chat")
    assert t.workload_gpu_utilization.value("ml", "chat") is None
    assert t.workload_cost_per_hour.value("ml", "chat", "EUR") is None
    assert t.workload_gpu_utilization.value("ml", "embed") == 50


# -- IoTime ----------------------------------------------------------------------------------------------


class Adapter:
    name = "fake"

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def fetch(self, seconds: float) -> str:
        self.clock[0] += seconds
        return "done"


def test_time_inside_a_timed_adapter_counts_as_io_of_the_calling_thread() -> None:
    clock = [0.0]
    io = IoTime(clock=lambda: clock[0])
    adapter = io.timed(Adapter(clock))
    assert adapter.fetch(0.25) == "done"
    assert adapter.name == "fake"  # attributes pass through
    assert io.spent() == 0.25
    other: list[float] = []
    thread = threading.Thread(target=lambda: other.append(io.spent()))
    thread.start()
    thread.join()
    assert other == [0.0]


def test_io_time_counts_calls_that_raise() -> None:
    clock = [0.0]
    io = IoTime(clock=lambda: clock[0])

    def failing() -> None:
        clock[0] += 1.0
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        io.call(failing)
    assert io.spent() == 1.0


def test_each_reconciliation_is_observed_in_both_histograms() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=60)
    c.workload("ml", "chat")
    c.reconcile("ml", "chat")
    c.reconcile("ml", "chat")
    sample = c.telemetry.registry.get_sample_value
    assert sample("rightsizer_reconcile_duration_seconds_count") == 2
    assert sample("rightsizer_reconcile_cpu_seconds_count") == 2
    assert c.telemetry.passes.value() == 2
    cpu, wall = (
        sample("rightsizer_reconcile_cpu_seconds_sum"),
        sample("rightsizer_reconcile_duration_seconds_sum"),
    )
    assert cpu is not None and wall is not None and 0 <= cpu <= wall


# -- FleetCache --------------------------------------------------------------------------------------


class CountingSource:
    def __init__(self) -> None:
        self.fetches = 0

    def fleet_samples(self, signal: str, window: int, over: str) -> dict[Any, Any]:
        self.fetches += 1
        return {}


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_one_fleet_query_per_pass_even_when_an_earlier_now_arrives_after_a_later_one() -> None:
    cache = FleetCache(ttl=timedelta(seconds=15))
    source = CountingSource()
    # Two workloads of one pass: the later-firing one reaches the cache first.
    cache.get(source, "DCGM_FI_DEV_GPU_UTIL", 60, T0 + timedelta(seconds=2))  # type: ignore[arg-type]
    cache.get(source, "DCGM_FI_DEV_GPU_UTIL", 60, T0)  # type: ignore[arg-type]
    assert source.fetches == 1
    cache.get(source, "DCGM_FI_DEV_GPU_UTIL", 60, T0 + timedelta(seconds=30))  # type: ignore[arg-type]
    assert source.fetches == 2  # the next pass fetches again


def test_the_fleet_cache_keeps_no_expired_answer_and_at_most_its_bound() -> None:
    cache = FleetCache(ttl=timedelta(seconds=15), max_entries=2)
    source = CountingSource()
    for window in (60, 120, 300):  # three windows in one pass: the oldest answer goes
        cache.get(source, "DCGM_FI_DEV_GPU_UTIL", window, T0)  # type: ignore[arg-type]
    assert len(cache) == 2
    cache.get(source, "DCGM_FI_DEV_GPU_UTIL", 300, T0)  # type: ignore[arg-type]
    assert source.fetches == 3, "the newest answers are still served"
    cache.get(source, "DCGM_FI_DEV_GPU_UTIL", 60, T0 + timedelta(seconds=30))  # type: ignore[arg-type]
    assert len(cache) == 1, "answers of an earlier pass are dropped when the next is stored"


def test_workloads_spread_over_an_interval_share_one_fleet_query() -> None:
    c = MemoryCluster(interval=30)
    for name in ("a", "b", "c"):
        c.deployment("ml", name, 1, util=60)
        c.workload("ml", name)
    start = c.now
    for offset, name in ((0, "a"), (12, "b"), (25, "c")):  # kopf fires each timer on its own phase
        c.now = start + timedelta(seconds=offset)
        c.reconcile("ml", name)
    assert len(c.metrics.queries) == 1
    c.now = start + timedelta(seconds=31)
    c.reconcile("ml", "a")
    assert len(c.metrics.queries) == 2


def test_fleet_queries_run_on_one_thread_whichever_worker_asks() -> None:
    names: list[str] = []

    class NamingSource(CountingSource):
        def fleet_samples(self, signal: str, window: int, over: str) -> dict[Any, Any]:
            names.append(threading.current_thread().name)
            return super().fleet_samples(signal, window, over)

    cache = FleetCache(ttl=timedelta(seconds=1))
    source = NamingSource()
    workers = [
        threading.Thread(
            target=cache.get, args=(source, "DCGM_FI_DEV_GPU_UTIL", 60, T0 + timedelta(seconds=5 * i))
        )
        for i in range(3)
    ]
    for w in workers:
        w.start()
        w.join()
    assert len(names) == 3 and len(set(names)) == 1
