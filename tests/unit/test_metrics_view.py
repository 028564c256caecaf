"""The metrics gate: only fresh, valid data covering every Ready pod may drive a decision."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.metrics_view import GpuSample, Hold, HoldCode, UsableMetrics, view_metrics

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
MAX_AGE = timedelta(seconds=60)


def sample(pod: str, percent: float, age_s: float = 5, **extra: object) -> GpuSample:
    return GpuSample(pod=pod, percent=percent, timestamp=NOW - timedelta(seconds=age_s), **extra)  # type: ignore[arg-type]


def view(
    samples: list[GpuSample], ready: list[str], not_ready: list[str] | None = None
) -> UsableMetrics | Hold:
    return view_metrics(samples, ready, not_ready or [], NOW, MAX_AGE)


def test_fresh_samples_for_every_ready_pod_are_usable() -> None:
    result = view([sample("web-0", 80), sample("web-1", 40)], ["web-0", "web-1"])
    assert isinstance(result, UsableMetrics)
    assert result.aggregate == 60
    assert [(p.pod, p.percent) for p in result.per_pod] == [("web-0", 80), ("web-1", 40)]
    assert result.sampled_at == NOW - timedelta(seconds=5)
    assert "2 of 2 Ready pods" in result.reason


@pytest.mark.parametrize(
    ("samples", "ready", "code", "words"),
    [
        pytest.param([], ["web-0"], HoldCode.NO_DATA, "no GPU samples", id="no-data"),
        pytest.param([sample("web-0", 50)], [], HoldCode.NO_READY_PODS, "no Ready pods", id="no-ready-pods"),
        pytest.param(
            [sample("web-0", 50), sample("web-1", 50, age_s=180)],
            ["web-0", "web-1"],
            HoldCode.STALE,
            "web-1 sample is 3m old (> 1m)",
            id="stale",
        ),
        pytest.param([sample("web-0", math.nan)], ["web-0"], HoldCode.INVALID, "NaN", id="nan"),
        pytest.param([sample("web-0", math.inf)], ["web-0"], HoldCode.INVALID, "infinite", id="inf"),
        pytest.param([sample("web-0", -1)], ["web-0"], HoldCode.INVALID, "outside 0-100%", id="negative"),
        pytest.param([sample("web-0", 100.5)], ["web-0"], HoldCode.INVALID, "outside 0-100%", id="over-100"),
        pytest.param(
            [sample("web-0", 50, age_s=-600)], ["web-0"], HoldCode.INVALID, "in the future", id="future"
        ),
    ],
)
def test_unusable_samples_hold(
    samples: list[GpuSample], ready: list[str], code: HoldCode, words: str
) -> None:
    result = view(samples, ready)
    assert isinstance(result, Hold)
    assert result.code is code
    assert words in result.reason


def test_partial_metrics_hold() -> None:
    result = view([sample("web-0", 90), sample("web-2", 90)], ["web-0", "web-1", "web-2"])
    assert isinstance(result, Hold)
    assert result.code is HoldCode.PARTIAL
    assert result.reason == "only 2 of 3 Ready pods reported GPU samples; missing: web-1"


def test_nan_holds() -> None:
    result = view([sample("web-0", 10), sample("web-1", math.nan)], ["web-0", "web-1"])
    assert isinstance(result, Hold) and result.code is HoldCode.INVALID


def test_not_ready_pods_are_left_out_of_the_aggregate() -> None:
    result = view([sample("web-0", 80), sample("web-1", 0)], ["web-0"], not_ready=["web-1"])
    assert isinstance(result, UsableMetrics)
    assert result.aggregate == 80
    assert result.not_ready == ("web-1",)
    assert result.reason == "1 of 1 Ready pods reported, mean 80%; starting, not counted: web-1"


def test_not_ready_pod_without_samples_is_not_partial_data() -> None:
    result = view([sample("web-0", 80)], ["web-0"], not_ready=["web-1"])
    assert isinstance(result, UsableMetrics)


def test_samples_of_unknown_pods_are_ignored() -> None:
    result = view([sample("web-0", 80), sample("gone-7", math.nan, age_s=999)], ["web-0"])
    assert isinstance(result, UsableMetrics) and result.aggregate == 80


def test_multi_gpu_pod_summarises_its_gpus() -> None:
    samples = [
        sample("train-0", 90, gpu="0", memory_used_mib=30000, power_watts=300),
        sample("train-0", 10, gpu="1", memory_used_mib=50000, power_watts=100),
    ]
    result = view(samples, ["train-0"])
    assert isinstance(result, UsableMetrics)
    (pod,) = result.per_pod
    assert (pod.percent, pod.peak_gpu_percent, pod.gpus) == (50, 90, 2)
    assert pod.memory_used_mib == 50000
    assert pod.power_watts == 400
    assert pod.gpu_equivalents == 1.0
    assert result.power_watts == 400


def test_duplicate_series_for_one_gpu_keep_the_newest() -> None:
    samples = [sample("web-0", 10, age_s=30), sample("web-0", 70, age_s=2)]
    result = view(samples, ["web-0"])
    assert isinstance(result, UsableMetrics) and result.aggregate == 70


def test_bad_memory_or_power_becomes_unknown_not_zero() -> None:
    samples = [sample("web-0", 50, memory_used_mib=math.nan, power_watts=-5)]
    result = view(samples, ["web-0"])
    assert isinstance(result, UsableMetrics)
    assert result.per_pod[0].memory_used_mib is None
    assert result.per_pod[0].power_watts is None
    assert result.power_watts is None


@given(
    st.dictionaries(
        st.sampled_from([f"web-{i}" for i in range(6)]),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()),
        min_size=1,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_usable_only_when_every_ready_pod_has_a_valid_fresh_sample(
    readings: dict[str, float | None], age_s: int
) -> None:
    ready = sorted(readings)
    samples = [sample(pod, value, age_s=age_s) for pod, value in readings.items() if value is not None]
    result = view(samples, ready)
    all_good = all(v is not None and 0 <= v <= 100 for v in readings.values()) and age_s <= 60
    assert isinstance(result, UsableMetrics) == all_good
