"""An hour of one workload's GPU samples, kept column-wise for GPU-fit advice.

As objects (a GpuSample, its datetime and floats) a sample costs about 400 bytes; an hour of a fleet
with 5,000 GPUs sampled every 30 s is 600,000 of them, so the operator's memory would grow by ~230 MiB
in its first hour (benchmarks/history.py). Here a sample is 28 bytes in typed arrays (time,
utilisation, memory as doubles, so values come back exactly as read, and the index of its pod/GPU
series).

Pure and clock-free: callers pass `now`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from rightsizer.core.metrics_view import GpuSample

SeriesKey = tuple[str, str]  # (pod, gpu)

_NONE = math.nan  # memory not reported (a NaN reading is not usable either, so nothing is lost)


class GpuHistory:
    """Samples of one workload's GPUs over the last `horizon`, oldest first, at most `max_samples`
    (the oldest go first; a workload with very many GPUs keeps a shorter window)."""

    __slots__ = (
        "_horizon",
        "_key_index",
        "_keys",
        "_last",
        "_max",
        "_memory",
        "_percent",
        "_series",
        "_time",
    )

    def __init__(self, horizon: timedelta, max_samples: int = 100_000) -> None:
        self._horizon = horizon.total_seconds()
        self._max = max_samples
        self._keys: list[SeriesKey] = []
        self._key_index: dict[SeriesKey, int] = {}
        self._last: list[float] = []  # newest time kept per series: a re-read sample is not added twice
        self._time = array("d")
        self._series = array("I")
        self._percent = array("d")
        self._memory = array("d")

    def __len__(self) -> int:
        return len(self._time)

    def add(self, samples: Iterable[GpuSample], now: datetime) -> None:
        """Append the samples newer than what each series holds; drop what fell out of the horizon."""
        for sample in samples:
            key = (sample.pod, sample.gpu)
            index = self._key_index.get(key)
            if index is None:
                index = self._key_index[key] = len(self._keys)
                self._keys.append(key)
                self._last.append(-math.inf)
            at = sample.timestamp.timestamp()
            if at <= self._last[index]:
                continue
            self._last[index] = at
            self._time.append(at)
            self._series.append(index)
            self._percent.append(sample.percent)
            memory = sample.memory_used_mib
            self._memory.append(_NONE if memory is None else memory)
        self._trim(now.timestamp() - self._horizon)

    def samples(self) -> list[GpuSample]:
        """The kept samples as GpuSamples (power is not kept: GPU fit does not use it)."""
        keys = self._keys
        return [
            GpuSample(
                pod=keys[series][0],
                gpu=keys[series][1],
                percent=percent,
                timestamp=datetime.fromtimestamp(at, UTC),
                memory_used_mib=None if math.isnan(memory) else memory,
            )
            for at, series, percent, memory in zip(
                self._time, self._series, self._percent, self._memory, strict=True
            )
        ]

    def nbytes(self) -> int:
        """Bytes held by the sample columns (not the series names)."""
        return sum(a.itemsize * len(a) for a in (self._time, self._series, self._percent, self._memory))

    def _trim(self, cutoff: float) -> None:
        # Samples arrive about in time order, so the old ones are at the front.
        drop = 0
        times = self._time
        while drop < len(times) and times[drop] < cutoff:
            drop += 1
        drop = max(drop, len(times) - self._max)
        if drop <= 0:
            return
        for column in (self._time, self._series, self._percent, self._memory):
            del column[:drop]
        self._forget_unused_series()

    def _forget_unused_series(self) -> None:
        """Pods come and go: keep names only of series that still have samples, renumbered."""
        used = sorted(set(self._series))
        if len(used) == len(self._keys):
            return
        renumber = {old: new for new, old in enumerate(used)}
        self._keys = [self._keys[old] for old in used]
        self._last = [self._last[old] for old in used]
        self._key_index = {key: new for new, key in enumerate(self._keys)}
        self._series = array("I", (renumber[old] for old in self._series))
