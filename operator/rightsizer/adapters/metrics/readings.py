"""Values that are not readings, refused at the edge.

DCGM writes a *blank* value when a field is unsupported or not yet sampled (``DCGM_INT64_BLANK`` is
0x7ffffffffffffff0, its "not supported" neighbour 9223372036854775794; the int32 and fp64 blanks are
0x7ffffff0 and 2^47). Taken as a reading, a blank power draw costs about 1e15 per hour. Such values,
utilisation outside 0-100 % (0-1 for ratios), memory above the GPU's own and power above twice the
model's rating (with a margin for variants the catalog lacks) are *missing* for that series:
the pod is unknown, never idle and never priced on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import StrEnum

from rightsizer.adapters.metrics.base import FB_FREE, FB_USED, POWER_USAGE, RATIO_SIGNALS
from rightsizer.core.gpu_catalog import GpuModel, find_gpu_model

# The smallest DCGM blank (int32); no utilisation, MiB or watt count comes near it.
_BLANK_FLOOR = float(0x7FFFFFF0)
_POWER_HEADROOM = 2
# A variant the catalog does not list (H100 NVL: 94 GB) maps to its family's default; the margin
# keeps its real readings while still refusing units mix-ups (bytes for MiB) and garbage.
_MEMORY_HEADROOM = 1.5


class Rejection(StrEnum):
    """Why a value is not a reading; the ``reason`` label of the rejected-samples counter."""

    SENTINEL = "sentinel"
    OUT_OF_RANGE = "out_of_range"
    ABOVE_GPU_MEMORY = "above_gpu_memory"
    ABOVE_RATED_POWER = "above_rated_power"


OnRejected = Callable[[Rejection], None]


def _ignore(reason: Rejection) -> None:
    return None


def rejection(name: str, value: float, labels: Mapping[str, str]) -> Rejection | None:
    """Why ``value`` of canonical metric ``name`` is not a reading, or None when it is one. NaN is
    passed on: the caller holds on it and says so (a NaN means the exporter itself failed)."""
    if math.isnan(value):
        return None
    if math.isinf(value) or abs(value) >= _BLANK_FLOOR:
        return Rejection.SENTINEL
    if value < 0:
        return Rejection.OUT_OF_RANGE
    if name in (FB_USED, FB_FREE):
        model = _model(labels)
        if model is not None and value > _MEMORY_HEADROOM * model.memory_mib:
            return Rejection.ABOVE_GPU_MEMORY
        return None
    if name == POWER_USAGE:
        model = _model(labels)
        if model is not None and value > _POWER_HEADROOM * model.rated_watts:
            return Rejection.ABOVE_RATED_POWER
        return None
    ceiling = 1.0 if name in RATIO_SIGNALS else 100.0
    return Rejection.OUT_OF_RANGE if value > ceiling else None


def _model(labels: Mapping[str, str]) -> GpuModel | None:
    product = labels.get("modelName", "")
    return find_gpu_model(product) if product else None


def accept(on_rejected: OnRejected | None = None) -> Callable[[str, float, Mapping[str, str]], bool]:
    """A filter that counts what it refuses; True keeps the value."""
    count = on_rejected or _ignore

    def keep(name: str, value: float, labels: Mapping[str, str]) -> bool:
        reason = rejection(name, value, labels)
        if reason is None:
            return True
        count(reason)
        return False

    return keep
