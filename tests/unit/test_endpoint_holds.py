"""A workload whose GPU series come from a broken exporter endpoint holds, and its condition says
which endpoint and why; a workload served by a healthy endpoint is not affected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.adapters.metrics.base import name_failing_endpoints
from rightsizer.adapters.metrics.dcgm import DcgmSource
from rightsizer.core.metrics_view import GpuSample, Hold, HoldCode, UsableMetrics, view_metrics

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GOOD = "http://127.0.0.1:9400/nodes/a-0/metrics"
BAD = "http://127.0.0.1:9400/nodes/a-1/metrics"


def line(pod: str, gpu: str, value: str) -> str:
    return f'DCGM_FI_DEV_GPU_UTIL{{gpu="{gpu}",UUID="GPU-{pod}",namespace="ml",pod="{pod}"}} {value}\n'


BODIES = {
    GOOD: line("chat-1", "0", "80"),
    BAD: line("train-1", "0", "10") + line("train-1", "1", "N/A"),
}


def metrics_of(pods: list[str]) -> tuple[UsableMetrics | Hold, DcgmSource]:
    source = DcgmSource([GOOD, BAD], fetch=lambda url, timeout: BODIES[url], clock=lambda: NOW)
    fleet = source.fleet_samples()
    samples = [GpuSample(pod, s.value, s.timestamp) for (_, pod), s in fleet.items() if pod in pods]
    return view_metrics(samples, pods, [], NOW, timedelta(seconds=60)), source


def test_hold_for_missing_samples_names_the_failing_endpoint_and_its_parse_error() -> None:
    metrics, source = metrics_of(["train-1"])
    named = name_failing_endpoints(metrics, source)
    assert isinstance(named, Hold) and named.code is HoldCode.NO_DATA
    assert named.reason.startswith(
        "no GPU samples for any of the 1 Ready pods; 1 exporter endpoint failing: "
    )
    assert f"{BAD}: unreadable exposition, line 2: invalid value 'N/A'" in named.reason


def test_a_workload_on_a_healthy_endpoint_is_served_while_another_endpoint_fails() -> None:
    metrics, source = metrics_of(["chat-1"])
    assert isinstance(metrics, UsableMetrics) and metrics.aggregate == 80
    assert name_failing_endpoints(metrics, source) is metrics


def test_holds_for_other_reasons_and_sources_without_endpoints_are_left_as_they_are() -> None:
    _, source = metrics_of([])
    stale = Hold(HoldCode.STALE, "pod x sample is 5m old")
    assert name_failing_endpoints(stale, source) is stale
    missing = Hold(HoldCode.PARTIAL, "only 1 of 2 Ready pods reported GPU samples")
    assert name_failing_endpoints(missing, object()) is missing
