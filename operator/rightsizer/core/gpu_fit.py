"""Over-provisioning: fewer GPUs per replica, a MIG slice, or a smaller GPU model.

Recommendations only, never acted on automatically. They follow VPA's recipe: a high
percentile (p90) of what was used over an observation window plus a 15% margin, except that
memory is never recommended below the peak actually seen, because running out of GPU memory
kills the process rather than slowing it down.

- GPU count: a GPU whose every sample over the window stayed below the busy threshold was
  allocated but never used. A replica needs its requested GPUs minus its never-busy ones (at
  least one); the busiest replica decides. A GPU without any samples is unknown, so it counts
  as needed.
- MIG profile (single-GPU replicas on a MIG-capable model): the smallest slice whose memory
  holds the memory need and whose compute share covers the utilisation need. A replica already on
  one slice is sized the same way, its activity first turned into a share of the whole GPU.
- GPU model: the smallest catalog model whose memory holds the need and whose throughput,
  relative to the current model's dense FP16 figure, keeps the utilisation need within 100%.
  Utilisation as DCGM reports it is time-busy, not throughput, so this is a rough guide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rightsizer.api.durations import format_duration
from rightsizer.core.gpu_catalog import CATALOG, GpuModel, MigProfile
from rightsizer.core.metrics_view import IDLE_GPU_PERCENT, GpuSample
from rightsizer.core.wording import format_percent


@dataclass(frozen=True)
class GpuFit:
    """What would fit; None in a field means "keep what you have"."""

    gpus_per_replica: int | None
    mig_profile: str | None
    gpu_model: str | None
    util_p90: float | None
    memory_need_mib: float | None
    reason: str


def recommend_gpu_fit(
    *,
    samples: Sequence[GpuSample],
    gpus_per_replica: int,
    model: GpuModel | None,
    now: datetime,
    observation: timedelta,
    min_observation: timedelta,
    busy_threshold_percent: float = float(IDLE_GPU_PERCENT),
    margin: float = 0.15,
    percentile: float = 0.9,
    catalog: Sequence[GpuModel] = CATALOG,
) -> GpuFit:
    """Recommend a better GPU fit from samples over ``[now - observation, now]``.

    ``samples`` are range samples of every replica's GPUs; ``min_observation`` is how much
    history (first to last sample) is needed before any recommendation is made.
    """
    window = _observed(samples, now, observation, min_observation)
    if isinstance(window, GpuFit):
        return window
    valid, span = window

    series: dict[tuple[str, str], list[GpuSample]] = {}
    for sample in valid:
        series.setdefault((sample.pod, sample.gpu), []).append(sample)
    peaks = {key: max(s.percent for s in points) for key, points in series.items()}
    busy_keys = [key for key, peak in peaks.items() if peak >= busy_threshold_percent]

    parts: list[str] = []
    needed = _gpus_needed(peaks, gpus_per_replica, busy_threshold_percent)
    count = needed if needed < gpus_per_replica else None
    if count is not None:
        parts.append(
            f"{gpus_per_replica - needed} of {gpus_per_replica} GPUs per replica never above "
            f"{format_percent(busy_threshold_percent)} in {format_duration(span)}: "
            f"{needed} per replica is enough"
        )

    # The GPUs that stay carry the load; if none was ever busy, all of them describe the need.
    kept = [s for key in (busy_keys or list(series)) for s in series[key]]
    util_p90 = _percentile([s.percent for s in kept], percentile)
    util_need = util_p90 * (1 + margin)
    memories = _memory_readings(kept)
    pct = f"p{round(percentile * 100)}"
    if not memories:
        parts.append(f"{pct} util {format_percent(util_p90)}; no memory readings, so no GPU model advice")
        return GpuFit(count, None, None, util_p90, None, _sentence(parts))
    peak_memory = max(memories)
    memory_need = _memory_need(memories, percentile, margin)
    parts.append(
        f"{pct} util {format_percent(util_p90)}, memory need {memory_need / 1024:.1f} GiB "
        f"({pct} +{format_percent(margin * 100)}, at least the peak {peak_memory / 1024:.1f} GiB)"
    )
    if model is None:
        parts.append("GPU model unknown, so no MIG or model advice")
        return GpuFit(count, None, None, util_p90, memory_need, _sentence(parts))

    profile = None
    if (count or gpus_per_replica) == 1:
        profile = _smallest_mig_profile(model, memory_need, util_need)
        if profile is not None:
            parts.append(
                f"MIG {profile.name} fits ({model.profile_memory_mib(profile) / 1024:.1f} GiB, "
                f"{profile.compute_fraction} of the compute)"
            )
    smaller = _smallest_model(model, memory_need, util_need, catalog)
    if smaller is not None:
        parts.append(f"{smaller.name} fits ({smaller.memory_mib / 1024:.1f} GiB)")
    if profile is None and smaller is None:
        parts.append(f"{model.name} is the right size")
    return GpuFit(
        count,
        profile.name if profile else None,
        smaller.name if smaller else None,
        util_p90,
        memory_need,
        _sentence(parts),
    )


def recommend_mig_fit(
    *,
    samples: Sequence[GpuSample],
    model: GpuModel,
    profile: MigProfile,
    now: datetime,
    observation: timedelta,
    min_observation: timedelta,
    margin: float = 0.15,
    percentile: float = 0.9,
) -> GpuFit:
    """The MIG slice a one-slice replica needs, sized against the parent model's profiles.

    A slice reports its activity as a share of the slice itself, so it is first turned into a share
    of the whole GPU (x the slice's compute fraction): comparing slice activity with whole-GPU sizes
    would call a busy 1g slice nearly idle. The answer may be a larger slice, or a whole GPU."""
    window = _observed(samples, now, observation, min_observation)
    if isinstance(window, GpuFit):
        return window
    valid, _ = window
    pct = f"p{round(percentile * 100)}"
    util_p90 = _percentile([s.percent for s in valid], percentile)
    gpu_need = util_p90 * float(profile.compute_fraction) * (1 + margin)
    memories = _memory_readings(valid)
    said = (
        f"{pct} util {format_percent(util_p90)} of the {profile.name} slice "
        f"({format_percent(util_p90 * float(profile.compute_fraction))} of the whole {model.name})"
    )
    if not memories:
        return GpuFit(None, None, None, util_p90, None, f"{said}; no memory readings, so no MIG advice")
    memory_need = _memory_need(memories, percentile, margin)
    said += f", memory need {memory_need / 1024:.1f} GiB"
    fitting = _smallest_mig_profile(model, memory_need, gpu_need)
    if fitting is None:
        return GpuFit(
            1, None, None, util_p90, memory_need, f"{said}; no slice smaller than a GPU fits: 1 GPU"
        )
    if fitting == profile:
        return GpuFit(
            None, None, None, util_p90, memory_need, f"{said}; MIG {profile.name} is the right size"
        )
    return GpuFit(
        None,
        fitting.name,
        None,
        util_p90,
        memory_need,
        f"{said}; MIG {fitting.name} fits ({model.profile_memory_mib(fitting) / 1024:.1f} GiB, "
        f"{fitting.compute_fraction} of the compute)",
    )


def _observed(
    samples: Sequence[GpuSample], now: datetime, observation: timedelta, min_observation: timedelta
) -> tuple[list[GpuSample], timedelta] | GpuFit:
    """The usable samples of the window and their span, or why there is too little to go on."""
    start = now - observation
    valid = [s for s in samples if _usable(s) and start <= s.timestamp <= now]
    if not valid:
        return _nothing(f"no usable GPU samples in the last {format_duration(observation)}")
    span = max(s.timestamp for s in valid) - min(s.timestamp for s in valid)
    if span < min_observation:
        return _nothing(
            f"only {format_duration(span)} of samples; {format_duration(min_observation)} needed "
            "before recommending"
        )
    return valid, span


def _gpus_needed(peaks: dict[tuple[str, str], float], requested: int, threshold: float) -> int:
    never_busy: dict[str, int] = {}
    for (pod, _), peak in peaks.items():
        never_busy.setdefault(pod, 0)
        if peak < threshold:
            never_busy[pod] += 1
    return max(max(1, requested - idle) for idle in never_busy.values())


def _smallest_mig_profile(model: GpuModel, memory_need: float, util_need: float) -> MigProfile | None:
    fitting = [
        p
        for p in model.mig_profiles
        if p.compute_fraction < 1
        and model.profile_memory_mib(p) >= memory_need
        and float(p.compute_fraction) * 100 >= util_need
    ]
    return min(fitting, key=lambda p: (p.compute_fraction, p.memory_fraction), default=None)


def _smallest_model(
    model: GpuModel, memory_need: float, util_need: float, catalog: Sequence[GpuModel]
) -> GpuModel | None:
    def smaller(candidate: GpuModel) -> bool:
        if candidate.fp16_tflops != model.fp16_tflops:
            return candidate.fp16_tflops < model.fp16_tflops
        return candidate.memory_mib < model.memory_mib

    fitting = [
        m
        for m in catalog
        if smaller(m) and m.memory_mib >= memory_need and util_need * model.fp16_tflops / m.fp16_tflops <= 100
    ]
    return min(fitting, key=lambda m: (m.fp16_tflops, m.memory_mib), default=None)


def _memory_readings(samples: Sequence[GpuSample]) -> list[float]:
    return [
        s.memory_used_mib
        for s in samples
        if s.memory_used_mib is not None and math.isfinite(s.memory_used_mib) and s.memory_used_mib >= 0
    ]


def _memory_need(memories: Sequence[float], percentile: float, margin: float) -> float:
    # Never below the peak seen: running out of GPU memory kills the process.
    return max(_percentile(memories, percentile) * (1 + margin), *memories)


def _usable(sample: GpuSample) -> bool:
    return math.isfinite(sample.percent) and 0 <= sample.percent <= 100


def _percentile(values: Sequence[float], quantile: float) -> float:
    """Nearest-rank percentile: always a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


def _nothing(reason: str) -> GpuFit:
    return GpuFit(None, None, None, None, None, reason)


def _sentence(parts: Sequence[str]) -> str:
    return "; ".join(parts)
