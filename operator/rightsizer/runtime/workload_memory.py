"""What the workload loop keeps in this process between passes: recent samples for GPU-fit advice, the
scaling state last written, and one fleet-wide metrics answer per interval.

None of it is needed for correctness after a restart: the scaling state also sits on the GPUWorkload,
the advice waits for enough history again, and the fleet answer is fetched again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from rightsizer.adapters.metrics.base import FleetSamples, GpuMetricsSource
from rightsizer.core.metrics_view import GpuSample
from rightsizer.core.sample_history import GpuHistory
from rightsizer.core.status import decode_scaling_state

SCALING_STATE = "rightsizer.io/scaling-state"
"""The GPUWorkload annotation that keeps the stabilisation windows' history and recent scale events."""

WorkloadKey = tuple[str, str]
"""(namespace, name) of a GPUWorkload."""


class SampleBuffer:
    """Recent per-pod samples of each workload, for GPU-fit advice (peaks over an observation window),
    stored compactly (core/sample_history.py).

    In memory only: after a restart the advice simply waits for enough history again."""

    def __init__(self, horizon: timedelta) -> None:
        self._horizon = horizon
        self._by_workload: dict[WorkloadKey, GpuHistory] = {}

    def add(self, key: WorkloadKey, samples: Sequence[GpuSample], now: datetime) -> list[GpuSample]:
        history = self._by_workload.setdefault(key, GpuHistory(self._horizon))
        history.add(samples, now)
        return history.samples()

    def forget(self, key: WorkloadKey) -> None:
        self._by_workload.pop(key, None)


class ScalingStateMemory:
    """The scaling state this process last wrote, per workload.

    kopf hands a timer the object as its watch last saw it. A pass that starts right after the
    previous one (which overran its interval, e.g. retrying a throttled call) may get the object
    before the watch has delivered that pass's own patch: read from there, the scaling state would
    forget the last scale, and a second one could follow inside the same period. So the newer of the
    object's state and the one last written wins (a later write by another replica is newer)."""

    def __init__(self) -> None:
        self._written: dict[WorkloadKey, str] = {}
        self._lock = threading.Lock()

    def current(self, key: WorkloadKey, on_object: str | None) -> str | None:
        with self._lock:
            written = self._written.get(key)
        if written is None or (on_object is not None and _newest(on_object) > _newest(written)):
            return on_object
        return written

    def wrote(self, key: WorkloadKey, state: str) -> None:
        with self._lock:
            self._written[key] = state

    def forget(self, key: WorkloadKey) -> None:
        with self._lock:
            self._written.pop(key, None)


def _newest(state: str) -> datetime:
    history, events = decode_scaling_state(state)
    return max([r.time for r in history] + [e.time for e in events], default=datetime.min.replace(tzinfo=UTC))


class FleetCache:
    """One query per metric per pass for every workload: the first workload of a pass fetches the
    whole fleet's samples, the others within `ttl` reuse them.

    Bounded: an answer older than `ttl` is never served again, so it is dropped when the next is
    stored; and at most `max_entries` (signal, window) answers are kept (the oldest goes first), so
    workloads with many distinct signals or windows cost queries, never unbounded memory."""

    def __init__(self, ttl: timedelta, max_entries: int = 8) -> None:
        self._ttl = ttl
        self._max_entries = max(1, max_entries)
        self._entries: dict[tuple[int, str, int], tuple[datetime, FleetSamples]] = {}
        self._lock = threading.Lock()
        # Always on the same thread: a fleet's answer is tens of MB of short-lived objects, and each
        # thread that parses one keeps its own malloc arena that big (eight workers: eight arenas).
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-metrics")

    def get(self, source: GpuMetricsSource, signal: str, window: int, now: datetime) -> FleetSamples:
        key = (id(source), signal, window)
        with self._lock:  # kopf runs sync timers on a thread pool
            cached = self._entries.get(key)
            # Either side of `now`: the workloads of one pass take their `now` when their timer fires,
            # and a worker thread may get to the cache after a later-firing one has filled it.
            if cached is not None and abs(now - cached[0]) < self._ttl:
                return cached[1]
            samples = self._fetcher.submit(source.fleet_samples, signal, window, "avg").result()
            for old in [k for k, (at, _) in self._entries.items() if abs(now - at) >= self._ttl]:
                del self._entries[old]
            while len(self._entries) >= self._max_entries:
                del self._entries[min(self._entries, key=lambda k: self._entries[k][0])]
            self._entries[key] = (now, samples)
            return samples

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
