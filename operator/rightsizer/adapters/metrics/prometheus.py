"""GPU metrics from Prometheus (through prometheus-api-client), scraped there from dcgm-exporter.

Queries select raw samples with a range selector (`{...}[120s]`) in one instant query, rather than
`avg_over_time(...)`: raw points keep their real timestamps (an instant query reports the evaluation
time) and show how much of the window is covered, so the caller can judge staleness and coverage
itself. The signal, framebuffer and power series come back together (`__name__=~...`, every
spelling of each), so the fleet costs one query a pass, however many workloads it serves. A series
selector (`job="dcgm-exporter",cluster="eu-1"`) keeps out other scrapes of the same GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from rightsizer.adapters.metrics import promql
from rightsizer.adapters.metrics.base import (
    FB_USED,
    GPU_UTIL,
    POWER_USAGE,
    FleetSamples,
    GpuSeries,
    Over,
    PodKey,
    PodSamples,
    signal_fields,
    summarise_pods,
    validate_window,
)
from rightsizer.adapters.metrics.gathering import Gathered, RawSeries, gather
from rightsizer.adapters.metrics.prometheus_http import SOURCE, Remedies, answering, prometheus_connection
from rightsizer.adapters.metrics.readings import OnRejected
from rightsizer.adapters.metrics.series_shapes import AUTO, LabelShape, spellings
from rightsizer.core.errors import MetricsUnavailable

_SOURCE = SOURCE
_REMEDIES = Remedies()


class PromQueryClient(Protocol):
    """The part of PrometheusConnect we use; tests pass a stub."""

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any: ...


class PrometheusSource:
    """A GpuMetricsSource reading dcgm-exporter series from Prometheus."""

    name = _SOURCE

    def __init__(
        self,
        client: PromQueryClient,
        *,
        url: str = "",
        pod_labels: LabelShape = AUTO,
        series_selector: str = "",
        on_rejected: OnRejected | None = None,
        lookback_seconds: int = 120,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self._url = url
        self._shape = pod_labels
        self._selector = promql.parse_matchers(series_selector)
        self._on_rejected = on_rejected
        self._lookback = lookback_seconds
        self._timeout = timeout_seconds
        self.queries_sent = 0

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        bearer_token_file: str | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout_seconds: float = 10.0,
        retries: int = 1,
        method: str = "GET",
        pod_labels: LabelShape = AUTO,
        series_selector: str = "",
        on_rejected: OnRejected | None = None,
        lookback_seconds: int = 120,
    ) -> PrometheusSource:
        """A source talking to `url` (see :func:`prometheus_connection`)."""
        client = prometheus_connection(
            url,
            headers=headers,
            bearer_token_file=bearer_token_file,
            ca_file=ca_file,
            insecure_skip_verify=insecure_skip_verify,
            timeout_seconds=timeout_seconds,
            retries=retries,
            method=method,
        )
        return cls(
            client,
            url=url,
            pod_labels=pod_labels,
            series_selector=series_selector,
            on_rejected=on_rejected,
            lookback_seconds=lookback_seconds,
            timeout_seconds=timeout_seconds,
        )

    # -- GpuMetricsSource ---------------------------------------------------------------------------

    def fleet_samples(
        self, signal: str = GPU_UTIL, window_seconds: int = 0, over: Over = "avg"
    ) -> FleetSamples:
        validate_window(window_seconds, over)
        return summarise_pods(self.gather(signal, window_seconds).gpus, over, window_seconds)

    def custom_pod_samples(self, template: str, namespace: str, pods: Sequence[str]) -> PodSamples:
        wanted = set(pods)
        if not wanted:
            return {}
        query = promql.render_template(template, namespace=namespace, pods=sorted(wanted))
        series: list[GpuSeries] = []
        for index, item in enumerate(_vector(self._query(query), query)):
            owner = self._owner(item["metric"])
            if owner is None or owner[0] != namespace or owner[1] not in wanted:
                continue
            timestamp, value = _point(item["value"])
            series.append(GpuSeries(owner[0], owner[1], f"series-{index}", signal=[(timestamp, value)]))
        return {pod: sample for (_, pod), sample in summarise_pods(series, "last", 0).items()}

    def scalar(
        self, query: str, namespace: str | None = None, pods: Sequence[str] | None = None
    ) -> float | None:
        rendered = promql.render_template(query, namespace=namespace, pods=pods)
        result = self._query(rendered)
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            return _point(result)[1]  # resultType "scalar": [time, "value"]
        items = _vector(result, rendered)
        if not items:
            return None
        if len(items) > 1:
            raise MetricsUnavailable(
                _SOURCE,
                f"query {rendered!r} returned {len(items)} series where one number was expected",
                "aggregate it, e.g. sum(...) or max(...)",
            )
        return _point(items[0]["value"])[1]

    # -- internals ----------------------------------------------------------------------------------

    def gather(self, signal: str = GPU_UTIL, window_seconds: int = 0) -> Gathered:
        """The per-GPU series with what was left out (unattributed GPUs, refused values, shapes)."""
        promql.validate_metric_name(signal)
        fields = [*signal_fields(signal), FB_USED, POWER_USAGE]
        names = promql.metric_names_regex([n for f in fields for n in spellings(f)])
        seconds = window_seconds if window_seconds > 0 else self._lookback
        query = f"{promql.selector(self._matchers(names))}[{seconds}s]"
        raw: list[RawSeries] = []
        for item in _matrix(self._query(query), query):
            metric = item["metric"]
            points = [_point(p) for p in item["values"]]
            raw.append(RawSeries(str(metric.get("__name__", "")), metric, points))
        return gather(raw, signal, self._shape, self._on_rejected)

    def _matchers(self, names: str) -> list[str]:
        """Under `auto` no pod label is matched, so each series shows its shape; a fixed shape asks
        only for series its labels attribute."""
        base = [promql.matcher("__name__", "=~", names), *self._selector]
        fixed = self._shape.fixed
        if fixed is None:
            return base
        return [*base, promql.matcher(fixed.namespace, "!=", ""), promql.matcher(fixed.pod, "!=", "")]

    def _owner(self, metric: Mapping[str, str]) -> PodKey | None:
        return self._shape.owner(metric)[0]

    def _query(self, query: str) -> Any:
        self.queries_sent += 1
        with answering(self._url or "Prometheus", query, self._timeout, _REMEDIES):
            return self._client.custom_query(query)


def _point(raw: Iterable[Any]) -> tuple[datetime, float]:
    try:
        timestamp, value = raw
        return datetime.fromtimestamp(float(timestamp), UTC), float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MetricsUnavailable(
            _SOURCE, f"unreadable sample {raw!r} in the answer", "check that the URL points at Prometheus"
        ) from exc


def _matrix(result: Any, query: str) -> list[dict[str, Any]]:
    if not isinstance(result, list) or any(not isinstance(i, dict) or "values" not in i for i in result):
        raise MetricsUnavailable(
            _SOURCE, f"expected a range vector from {query!r}", "check Prometheus' version (v2.x or newer)"
        )
    return result


def _vector(result: Any, query: str) -> list[dict[str, Any]]:
    if not isinstance(result, list) or any(not isinstance(i, dict) or "value" not in i for i in result):
        raise MetricsUnavailable(
            _SOURCE,
            f"expected an instant vector from {query!r}",
            "write an instant query (no [range] at the end), e.g. avg by (pod) (...)",
        )
    return result
