"""An in-memory GpuMetricsSource for tests of the code that consumes metrics.

It keeps points like a tiny TSDB and summarises them with the same rules as the real sources, so a
test states the world ("pod web-1 was at 90% for five minutes") instead of the answer. Values are
recorded already normalised (percent for utilisation signals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from rightsizer.adapters.metrics import promql
from rightsizer.adapters.metrics.base import (
    GPU_UTIL,
    FleetSamples,
    GpuSeries,
    Over,
    PodKey,
    PodSamples,
    Sample,
    signal_fields,
    summarise_pods,
    validate_window,
)
from rightsizer.core.errors import MetricsUnavailable

_Key = tuple[str, str, str]  # namespace, pod, gpu


class FakeGpuMetricsSource:
    name = "fake"

    def __init__(self, clock: Callable[[], datetime] | None = None, lookback_seconds: int = 120) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lookback = lookback_seconds
        self._signal: dict[tuple[_Key, str], list[tuple[datetime, float]]] = {}
        self._memory: dict[_Key, list[tuple[datetime, float]]] = {}
        self._power: dict[_Key, list[tuple[datetime, float]]] = {}
        self._devices: dict[_Key, str] = {}
        self._custom: dict[tuple[str, str], dict[str, float]] = {}
        self._scalars: dict[str, float | None] = {}
        self._failure: MetricsUnavailable | None = None
        self.queries: list[str] = []

    # -- arranging the world ------------------------------------------------------------------------

    def record(
        self,
        namespace: str,
        pod: str,
        value: float,
        *,
        at: datetime | None = None,
        signal: str = GPU_UTIL,
        gpu: str = "0",
        memory_used_mib: float | None = None,
        power_watts: float | None = None,
        device: str | None = None,
    ) -> None:
        """One point for one GPU of one pod (default: now, GPU "0", DCGM_FI_DEV_GPU_UTIL). ``gpu`` is
        the pod's own index; ``device`` names a physical GPU several pods may share (time-slicing)."""
        when = at or self._clock()
        key = (namespace, pod, gpu)
        if device is not None:
            self._devices[key] = device
        _insert(self._signal.setdefault((key, signal), []), when, value)
        if memory_used_mib is not None:
            _insert(self._memory.setdefault(key, []), when, memory_used_mib)
        if power_watts is not None:
            _insert(self._power.setdefault(key, []), when, power_watts)

    def set_util(
        self,
        namespace: str,
        pods: str | Iterable[str],
        value: float,
        *,
        signal: str = GPU_UTIL,
        memory_used_mib: float | None = None,
        power_watts: float | None = None,
    ) -> None:
        """Convenience: the same value, now, for one or many pods."""
        for pod in [pods] if isinstance(pods, str) else pods:
            self.record(
                namespace, pod, value, signal=signal, memory_used_mib=memory_used_mib, power_watts=power_watts
            )

    def forget(self, namespace: str, pod: str) -> None:
        """The pod's series vanish, as when its exporter stops reporting it."""
        for store in (self._memory, self._power):
            for key in [k for k in store if k[:2] == (namespace, pod)]:
                del store[key]
        for skey in [k for k in self._signal if k[0][:2] == (namespace, pod)]:
            del self._signal[skey]

    def set_custom(self, template: str, namespace: str, values: Mapping[str, float]) -> None:
        self._custom[(template, namespace)] = dict(values)

    def set_scalar(self, query: str, value: float | None) -> None:
        self._scalars[query] = value

    def fail(self, error: MetricsUnavailable | None) -> None:
        """Every query raises `error` until called again with None (an outage)."""
        self._failure = error

    # -- GpuMetricsSource ---------------------------------------------------------------------------

    def fleet_samples(
        self, signal: str = GPU_UTIL, window_seconds: int = 0, over: Over = "avg"
    ) -> FleetSamples:
        validate_window(window_seconds, over)
        self._ask(f"fleet {signal}")
        return self._summarise(signal, window_seconds, over)

    def custom_pod_samples(self, template: str, namespace: str, pods: Sequence[str]) -> PodSamples:
        wanted = set(pods)
        if not wanted:
            return {}
        promql.render_template(template, namespace=namespace, pods=wanted)  # refuse what Prometheus would
        self._ask(template)
        now = self._clock()
        values = self._custom.get((template, namespace), {})
        return {pod: Sample(value=v, timestamp=now, since=now) for pod, v in values.items() if pod in wanted}

    def scalar(
        self, query: str, namespace: str | None = None, pods: Sequence[str] | None = None
    ) -> float | None:
        promql.template_placeholders(query)
        self._ask(query)
        return self._scalars.get(query)

    # -- internals ----------------------------------------------------------------------------------

    def _ask(self, what: str) -> None:
        self.queries.append(what)
        if self._failure is not None:
            raise self._failure

    def _summarise(self, signal: str, window_seconds: int, over: Over) -> dict[PodKey, Sample]:
        now = self._clock()
        horizon = now - timedelta(seconds=window_seconds if window_seconds > 0 else self._lookback)
        fields = signal_fields(signal)
        gpus = {key for key, name in self._signal if name in fields}
        series: list[GpuSeries] = []
        for key in sorted(gpus):
            # Under Auto, the first field this GPU reports, as the real sources choose.
            name = next(f for f in fields if (key, f) in self._signal)
            device = self._devices.get(key, f"{key[0]}/{key[1]}/{key[2]}")
            series.append(
                GpuSeries(
                    key[0],
                    key[1],
                    device,
                    signal=_window(self._signal[(key, name)], horizon, now),
                    memory=_window(self._memory.get(key, []), horizon, now),
                    power=_window(self._power.get(key, []), horizon, now),
                    signal_name=name,
                )
            )
        return summarise_pods(series, over, window_seconds)


def _insert(points: list[tuple[datetime, float]], at: datetime, value: float) -> None:
    points[:] = sorted([p for p in points if p[0] != at] + [(at, value)])


def _window(
    points: list[tuple[datetime, float]], horizon: datetime, now: datetime
) -> list[tuple[datetime, float]]:
    return [p for p in points if horizon < p[0] <= now]
