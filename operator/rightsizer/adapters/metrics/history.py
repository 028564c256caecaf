"""Past GPU series, request signals and replica counts from Prometheus' range API, for
`rightsizer backtest`.

The GPU series are selected as the live reads select them (every spelling of the signal's fields,
the operator's series selector, the pod label shapes of ``series_shapes``) and read by the same
``gather``, so history is attributed, spelled and checked exactly as a pass reads the present. Two
differences, both because a range query evaluates at each step rather than returning raw points:

- the pods are narrowed in the query (a namespace and a pod-name regex), once per label shape when
  the shape is ``auto``, so a week of one workload's history never drags in the whole fleet's;
- ``lookback_delta`` is the operator's maximum sample age: a step sees a sample only when one was
  taken that recently, so silence in history reads as a gap, never as the last value carried on.
  (A Prometheus too old to take the parameter ignores it and looks back its own 5 minutes; series
  that end, a pod deleted or a scrape failing, still end there: Prometheus marks them stale.)

Prometheus answers at most 11,000 points per series and query: longer ranges go in several queries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rightsizer.adapters.metrics import promql
from rightsizer.adapters.metrics.base import GpuSeries, PodLabels, signal_fields
from rightsizer.adapters.metrics.gathering import RawSeries, gather
from rightsizer.adapters.metrics.prometheus_http import SOURCE, Remedies, answering, prometheus_connection
from rightsizer.adapters.metrics.series_shapes import AUTO, FIXED_SHAPES, LabelShape, spellings
from rightsizer.core.errors import MetricsUnavailable

_SOURCE = SOURCE
_REMEDIES = Remedies(
    refused="use a longer --step or a shorter --since",
    unreachable="check the Prometheus URL (--prometheus-url or RIGHTSIZER_PROMETHEUS__URL) and that it runs",
    slow="raise RIGHTSIZER_PROMETHEUS__TIMEOUT_SECONDS, or ask for a shorter --since",
    token="check the file RIGHTSIZER_PROMETHEUS__BEARER_TOKEN_FILE names",
)
MAX_STEPS_PER_QUERY = 10_000
"""Below Prometheus' limit of 11,000 points per series."""


PodHistory = dict[str, dict[datetime, float]]
"""Per pod, its value at each step that had one."""


class RangeQueryClient(Protocol):
    """The part of PrometheusConnect used here; tests pass a stub."""

    def custom_query_range(
        self,
        query: str,
        start_time: datetime,
        end_time: datetime,
        step: str,
        params: dict[str, Any] | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class Window:
    """Steps ``start, start + step, …`` up to ``end``, on whole seconds (what the range API takes)."""

    start: datetime
    end: datetime
    step_seconds: int

    def __post_init__(self) -> None:
        if self.step_seconds < 1:
            raise ValueError("the step must be at least one second")
        if self.end < self.start:
            raise ValueError("the window ends before it starts")

    @classmethod
    def ending(cls, end: datetime, span: timedelta, step_seconds: int) -> Window:
        last = datetime.fromtimestamp(int(end.timestamp()), UTC)
        count = int(span.total_seconds()) // step_seconds
        return cls(last - timedelta(seconds=count * step_seconds), last, step_seconds)

    def times(self) -> list[datetime]:
        count = int((self.end - self.start).total_seconds()) // self.step_seconds
        return [self.start + timedelta(seconds=i * self.step_seconds) for i in range(count + 1)]

    def chunks(self) -> list[Window]:
        """Consecutive windows of at most MAX_STEPS_PER_QUERY steps, on the same grid."""
        times = self.times()
        return [
            Window(part[0], part[-1], self.step_seconds)
            for part in (
                times[i : i + MAX_STEPS_PER_QUERY] for i in range(0, len(times), MAX_STEPS_PER_QUERY)
            )
        ]


class PrometheusHistory:
    """Range reads of one workload's GPU series and of its replica count."""

    def __init__(
        self,
        client: RangeQueryClient,
        *,
        url: str = "",
        pod_labels: LabelShape = AUTO,
        series_selector: str = "",
        timeout_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self._url = url or "Prometheus"
        self._timeout = timeout_seconds
        self._shape = pod_labels
        self._selector = promql.parse_matchers(series_selector)
        self.queries_sent = 0

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        bearer_token_file: str | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout_seconds: float = 10.0,
        pod_labels: LabelShape = AUTO,
        series_selector: str = "",
    ) -> PrometheusHistory:
        """A reader of `url`, told apart from the operator's source by the remedies it gives: a
        command's flags and environment, not the operator's settings."""
        # One quick retry of a gateway error; an unreachable Prometheus is said at once.
        client = prometheus_connection(
            url,
            bearer_token_file=bearer_token_file,
            ca_file=ca_file,
            insecure_skip_verify=insecure_skip_verify,
            timeout_seconds=timeout_seconds,
            retries=1,
        )
        return cls(
            client,
            url=url,
            pod_labels=pod_labels,
            series_selector=series_selector,
            timeout_seconds=timeout_seconds,
        )

    def gpu_series(
        self, namespace: str, pod_pattern: str, signal: str, window: Window, max_age: timedelta
    ) -> list[GpuSeries]:
        """The per-GPU series of the pods of `namespace` whose names match `pod_pattern` (an RE2
        pattern, matched whole), one point per step that saw a sample; the signal in percent."""
        promql.validate_metric_name(signal)
        names = promql.metric_names_regex([n for f in signal_fields(signal) for n in spellings(f)])
        merged: dict[tuple[str, frozenset[tuple[str, str]]], dict[datetime, float]] = {}
        for labels in self._pod_label_sets():
            matchers = [
                promql.matcher("__name__", "=~", names),
                *self._selector,
                promql.matcher(labels.namespace, "=", namespace),
                promql.matcher(labels.pod, "=~", pod_pattern),
            ]
            for item in self._range(promql.selector(matchers), window, max_age):
                metric = {str(k): str(v) for k, v in item["metric"].items()}
                key = (metric.get("__name__", ""), frozenset(metric.items()))
                merged.setdefault(key, {}).update(_points(item["values"]))
        raw = [
            RawSeries(name, dict(labels), sorted(points.items())) for (name, labels), points in merged.items()
        ]
        wanted = re.compile(pod_pattern)
        return [
            gpu
            for gpu in gather(raw, signal, self._shape).gpus
            if gpu.namespace == namespace and wanted.fullmatch(gpu.pod) and gpu.signal
        ]

    def replica_counts(
        self, metric: str, label: str, namespace: str, name: str, *, window: Window, max_age: timedelta
    ) -> dict[datetime, int]:
        """kube-state-metrics' count of one object per step (`metric{label="name"}` in `namespace`,
        or in ``exported_namespace`` when scraped without honouring its labels); empty when absent."""
        query = promql.selector(
            [
                promql.matcher("__name__", "=", promql.validate_metric_name(metric)),
                promql.matcher(label, "=", name),
            ]
        )
        counts: dict[datetime, int] = {}
        for item in self._range(query, window, max_age):
            labels = item["metric"]
            if labels.get("exported_namespace", labels.get("namespace")) != namespace:
                continue
            for at, value in _points(item["values"]).items():
                if not math.isnan(value):  # NaN is no count
                    counts[at] = max(counts.get(at, 0), int(value))
        return counts

    def pod_values(self, query: str, namespace: str, window: Window, max_age: timedelta) -> PodHistory:
        """A Pods signal's rendered query: each pod's value per step, the pod read from the series'
        labels as a live read reads it (the label shapes); series of no pod of `namespace` are left
        out."""
        out: dict[str, dict[datetime, float]] = {}
        for item in self._range(query, window, max_age):
            owner, _ = self._shape.owner({str(k): str(v) for k, v in item["metric"].items()})
            if owner is not None and owner[0] == namespace:
                out.setdefault(owner[1], {}).update(_points(item["values"]))
        return out

    def scalar_values(self, query: str, window: Window, max_age: timedelta) -> dict[datetime, float]:
        """A one-number query's value per step (Object, External, the wake-up query): refused when
        it answers several series, as a live read refuses it."""
        out: dict[datetime, float] = {}
        for item in self._range(query, window, max_age):
            for at, value in _points(item["values"]).items():
                if at in out:
                    raise MetricsUnavailable(
                        _SOURCE,
                        f"query {query!r} returned several series where one number was expected",
                        "aggregate it, e.g. sum(...) or max(...)",
                    )
                out[at] = value
        return out

    def _pod_label_sets(self) -> Sequence[PodLabels]:
        # Under auto each shape a series may have is asked for in turn; the answers are merged.
        return (self._shape.fixed,) if self._shape.fixed is not None else tuple(FIXED_SHAPES.values())

    def _range(self, query: str, window: Window, max_age: timedelta) -> list[dict[str, Any]]:
        lookback = f"{max(int(max_age.total_seconds()), 1)}s"
        out: list[dict[str, Any]] = []
        for part in window.chunks():
            self.queries_sent += 1
            result = self._send(query, part, {"lookback_delta": lookback})
            if not isinstance(result, list) or any(
                not isinstance(i, dict) or not isinstance(i.get("values"), list) or "metric" not in i
                for i in result
            ):
                raise MetricsUnavailable(
                    _SOURCE, f"{self._url} sent no range vector for {query!r}", "check that it is Prometheus"
                )
            out.extend(result)
        return out

    def _send(self, query: str, part: Window, params: Mapping[str, str]) -> Any:
        with answering(self._url, query, self._timeout, _REMEDIES):
            return self._client.custom_query_range(
                query, part.start, part.end, f"{part.step_seconds}s", params=dict(params)
            )


def _points(values: Sequence[Any]) -> dict[datetime, float]:
    out: dict[datetime, float] = {}
    for raw in values:
        try:
            timestamp, value = raw
            # Whole milliseconds: the steps' own grid, whatever float the answer carried.
            at = datetime.fromtimestamp(round(float(timestamp) * 1000) / 1000, UTC)
            out[at] = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MetricsUnavailable(
                _SOURCE, f"unreadable sample {raw!r} in the answer", "check that the URL points at Prometheus"
            ) from exc
    return out
