"""Over-provisioning advice: never-busy GPUs, MIG slices and smaller GPU models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.core.gpu_catalog import CATALOG, find_gpu_model
from rightsizer.core.gpu_fit import GpuFit, recommend_gpu_fit, recommend_mig_fit
from rightsizer.core.metrics_view import GpuSample

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
A100 = find_gpu_model("NVIDIA-A100-SXM4-80GB")


def series(
    pod: str, gpu: str, percents: list[float], memory_mib: float | None = None, every_s: int = 300
) -> list[GpuSample]:
    return [
        GpuSample(pod, p, NOW - timedelta(seconds=every_s * i), gpu=gpu, memory_used_mib=memory_mib)
        for i, p in enumerate(percents)
    ]


def fit(samples: list[GpuSample], gpus: int = 1, product: str = "NVIDIA-A100-SXM4-80GB") -> GpuFit:
    return recommend_gpu_fit(
        samples=samples,
        gpus_per_replica=gpus,
        model=find_gpu_model(product),
        now=NOW,
        observation=2 * HOUR,
        min_observation=HOUR,
    )


@pytest.mark.parametrize(
    ("product", "name"),
    [
        ("NVIDIA-A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA-A100-80GB-PCIe", "A100-80GB"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("NVIDIA-L4", "L4-24GB"),
        ("NVIDIA-A10", "A10-24GB"),
        ("Tesla-T4", "T4-16GB"),
        ("A100-80GB", "A100-80GB"),
    ],
)
def test_product_labels_map_to_catalog_models(product: str, name: str) -> None:
    model = find_gpu_model(product)
    assert model is not None and model.name == name


def test_unknown_gpu_is_not_guessed() -> None:
    assert find_gpu_model("NVIDIA-B200") is None
    assert find_gpu_model("NVIDIA-A10G") is None  # A10G is not an A10


def test_mig_profile_memory_is_the_profiles_share_of_the_gpu() -> None:
    assert A100 is not None
    sizes = {p.name: A100.profile_memory_mib(p) for p in A100.mig_profiles}
    assert sizes["1g.10gb"] == 10240
    assert sizes["3g.40gb"] == 40960
    assert all(model.mig_profiles == () for model in CATALOG if model.family in ("L4", "T4", "A10"))


def test_never_busy_gpus_are_recommended_away() -> None:
    samples = []
    for pod in ("train-0", "train-1"):
        samples += series(pod, "0", [70, 80, 75] * 5, memory_mib=60000)
        samples += series(pod, "1", [65, 90, 80] * 5, memory_mib=60000)
        samples += series(pod, "2", [0, 1, 2] * 5, memory_mib=0)
        samples += series(pod, "3", [0, 0, 0] * 5, memory_mib=0)
    result = fit(samples, gpus=4)
    assert result.gpus_per_replica == 2
    assert "2 of 4 GPUs per replica never above 5% in 1h10m: 2 per replica is enough" in result.reason


def test_the_busiest_replica_decides_the_gpu_count() -> None:
    samples = series("train-0", "0", [80] * 15) + series("train-0", "1", [0] * 15)
    samples += series("train-1", "0", [80] * 15) + series("train-1", "1", [60] * 15)
    assert fit(samples, gpus=2).gpus_per_replica is None


def test_gpu_without_samples_counts_as_needed() -> None:
    # Only one of two GPUs reports; the silent one is unknown, not idle.
    assert fit(series("train-0", "0", [50] * 15), gpus=2).gpus_per_replica is None


def test_small_memory_and_light_load_fit_a_mig_slice() -> None:
    samples = series("infer-0", "0", [5, 8, 10, 12] * 4, memory_mib=7000)
    result = fit(samples)
    assert result.mig_profile == "1g.10gb"  # 7000 MiB x 1.15 = 8050 ≤ 10240; p90 12% x 1.15 ≤ 1/7
    assert "MIG 1g.10gb fits" in result.reason


def test_memory_need_is_never_below_the_observed_peak() -> None:
    # p90 of memory is 9000 but the peak, 30000 MiB, must fit: 1g.10gb and 2g.20gb are too small.
    spike = GpuSample("infer-0", 10, NOW - timedelta(seconds=30), gpu="0", memory_used_mib=30000)
    samples = [*series("infer-0", "0", [10] * 20, memory_mib=9000), spike]
    result = fit(samples)
    assert result.memory_need_mib == 30000
    assert result.mig_profile == "3g.40gb"


def test_busy_gpu_gets_no_mig_advice() -> None:
    result = fit(series("infer-0", "0", [95] * 15, memory_mib=70000))
    assert (result.gpus_per_replica, result.mig_profile, result.gpu_model) == (None, None, None)
    assert "A100-80GB is the right size" in result.reason


def test_smaller_model_fits_when_memory_and_relative_compute_allow() -> None:
    # 12% of an A100 is about 31 of 121 L4 TFLOPS (~31%); 15 GiB of memory fits in the L4's 22.5 GiB.
    result = fit(series("infer-0", "0", [10, 12] * 8, memory_mib=15000))
    assert result.gpu_model == "L4-24GB"


def test_multi_gpu_replicas_get_no_mig_advice() -> None:
    samples = series("train-0", "0", [10] * 15, memory_mib=5000) + series(
        "train-0", "1", [10] * 15, memory_mib=5000
    )
    result = fit(samples, gpus=2)
    assert result.mig_profile is None


@pytest.mark.parametrize(
    ("samples", "words"),
    [
        pytest.param([], "no usable GPU samples in the last 2h", id="nothing"),
        pytest.param(series("infer-0", "0", [10] * 5), "only 20m of samples; 1h needed", id="too-short"),
    ],
)
def test_no_advice_without_enough_history(samples: list[GpuSample], words: str) -> None:
    result = fit(samples)
    assert (result.gpus_per_replica, result.mig_profile, result.gpu_model) == (None, None, None)
    assert words in result.reason


def test_without_memory_readings_only_the_gpu_count_is_advised() -> None:
    samples = series("train-0", "0", [50] * 15) + series("train-0", "1", [0] * 15)
    result = fit(samples, gpus=2)
    assert result.gpus_per_replica == 1
    assert (result.mig_profile, result.gpu_model) == (None, None)
    assert "no memory readings" in result.reason


def test_unknown_model_gets_count_advice_only() -> None:
    result = fit(series("infer-0", "0", [5] * 15, memory_mib=1000), product="NVIDIA-B200")
    assert (result.mig_profile, result.gpu_model) == (None, None)
    assert "GPU model unknown" in result.reason


# -- replicas already on a MIG slice -------------------------------------------------------------


def mig_fit(profile: str, percents: list[float], memory_mib: float | None) -> GpuFit:
    assert A100 is not None
    current = next(p for p in A100.mig_profiles if p.name == profile)
    return recommend_mig_fit(
        samples=series("p", "0", percents, memory_mib=memory_mib),
        model=A100,
        profile=current,
        now=NOW,
        observation=2 * HOUR,
        min_observation=HOUR,
    )


@pytest.mark.parametrize(
    ("profile", "busy", "memory_gib", "want", "words"),
    [
        # A 1g slice busy 90% of the time does a seventh of 90% of a GPU: it needs a bigger slice, not
        # a smaller one (read against whole-GPU sizes, 90% would be "too big for every slice").
        pytest.param("1g.10gb", 90, 6, "2g.20gb", "1g.10gb slice (12.9% of the whole A100-80GB)", id="grow"),
        pytest.param("3g.40gb", 10, 6, "1g.10gb", "MIG 1g.10gb fits", id="shrink"),
        pytest.param("1g.10gb", 40, 6, None, "MIG 1g.10gb is the right size", id="right-size"),
        pytest.param("1g.10gb", 30, 9.5, "1g.20gb", "memory need 10.9 GiB", id="memory-decides"),
    ],
)
def test_a_mig_slice_is_sized_against_the_parent_models_profiles(
    profile: str, busy: float, memory_gib: float, want: str | None, words: str
) -> None:
    result = mig_fit(profile, [busy] * 20, memory_gib * 1024)
    assert result.mig_profile == want
    assert words in result.reason


def test_a_slice_that_needs_more_than_any_slice_is_told_a_whole_gpu() -> None:
    result = mig_fit("4g.40gb", [100] * 20, 30 * 1024)
    assert (result.gpus_per_replica, result.mig_profile) == (1, None)
    assert "no slice smaller than a GPU fits" in result.reason
