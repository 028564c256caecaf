"""GPU metrics scraped straight from dcgm-exporter endpoints, for clusters without Prometheus.

Endpoints come from a lister callable (static URLs, a Service's EndpointSlices, or a pod selector),
so the source itself needs no cluster in tests. A scrape is shared by every query within
`cache_seconds`, keeping one scrape per pass whatever the number of workloads. The exporter only
knows "now", so the source keeps a bounded history of its own scrapes to answer windowed queries;
`Sample.since` tells the caller how much of the window that history really covers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import urllib3

from rightsizer.adapters.metrics.base import (
    FB_USED,
    GPU_UTIL,
    GR_ENGINE_ACTIVE,
    POWER_USAGE,
    FleetSamples,
    GpuSeries,
    Over,
    PodKey,
    PodSamples,
    Sample,
    signal_fields,
    summarise_pods,
    to_percent,
    validate_window,
)
from rightsizer.adapters.metrics.exposition import DEFAULT_MAX_SERIES, ScrapedSeries, parse_exposition
from rightsizer.adapters.metrics.gathering import gpu_identity
from rightsizer.adapters.metrics.readings import OnRejected, rejection
from rightsizer.adapters.metrics.series_shapes import AUTO, LabelShape, canonical_name, exporter_pods
from rightsizer.core.errors import ExpositionParseError, MetricsUnavailable

_SOURCE = "DCGM"
_NO_PROMQL = "set the workload's metric source to Prometheus to use PromQL queries and wake-up signals"

EndpointLister = Callable[[], Sequence[str]]
Fetch = Callable[[str, float], str]
Clock = Callable[[], datetime]

_GpuKey = tuple[str, str, str]  # namespace, pod, GPU identity


def static_endpoints(urls: Iterable[str]) -> EndpointLister:
    fixed = tuple(urls)
    return lambda: fixed


def http_fetch(max_bytes: int = 64 * 1024 * 1024) -> Fetch:
    """GET a /metrics body with a timeout and a size cap."""

    def fetch(url: str, timeout: float) -> str:
        with requests.get(url, timeout=timeout, stream=True) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise ValueError(f"body larger than {max_bytes} bytes")
            return body.decode("utf-8", errors="replace")

    return fetch


@dataclass(frozen=True)
class _Point:
    at: datetime
    value: float | None
    """None: the exporter sent a value that is not a reading (a DCGM blank, out of range)."""


class DcgmSource:
    """A GpuMetricsSource scraping dcgm-exporter's text exposition directly."""

    name = _SOURCE

    def __init__(
        self,
        endpoints: EndpointLister | Sequence[str],
        *,
        fetch: Fetch | None = None,
        clock: Clock | None = None,
        pod_labels: LabelShape = AUTO,
        on_rejected: OnRejected | None = None,
        timeout_seconds: float = 5.0,
        cache_seconds: float = 5.0,
        lookback_seconds: int = 120,
        history_seconds: int = 3600,
        max_series_per_scrape: int = DEFAULT_MAX_SERIES,
        parallel_scrapes: int = 8,
    ) -> None:
        self._lister = static_endpoints(endpoints) if not callable(endpoints) else endpoints
        self._fetch = fetch or http_fetch()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._shape = pod_labels
        self._on_rejected = on_rejected
        self._timeout = timeout_seconds
        self._cache = timedelta(seconds=cache_seconds)
        self._lookback = lookback_seconds
        self._history_span = timedelta(seconds=history_seconds)
        self._max_series = max_series_per_scrape
        self._parallel = max(1, parallel_scrapes)
        self._tracked = {GPU_UTIL, GR_ENGINE_ACTIVE, FB_USED, POWER_USAGE}
        self._history: dict[_GpuKey, dict[str, deque[_Point]]] = {}
        self._last_scrape: datetime | None = None
        self._lock = threading.Lock()
        self.last_errors: dict[str, str] = {}
        self.scrapes = 0

    # -- GpuMetricsSource ---------------------------------------------------------------------------

    def fleet_samples(
        self, signal: str = GPU_UTIL, window_seconds: int = 0, over: Over = "avg"
    ) -> FleetSamples:
        validate_window(window_seconds, over)
        return self._samples(signal, window_seconds, over)

    def custom_pod_samples(self, template: str, namespace: str, pods: Sequence[str]) -> PodSamples:
        raise MetricsUnavailable(_SOURCE, "a DCGM exporter cannot evaluate PromQL", _NO_PROMQL)

    def scalar(
        self, query: str, namespace: str | None = None, pods: Sequence[str] | None = None
    ) -> float | None:
        raise MetricsUnavailable(_SOURCE, "a DCGM exporter cannot evaluate PromQL", _NO_PROMQL)

    # -- scraping -----------------------------------------------------------------------------------

    def _samples(self, signal: str, window_seconds: int, over: Over) -> dict[PodKey, Sample]:
        with self._lock:
            fields = tuple(canonical_name(f) for f in signal_fields(signal))
            if not set(fields) <= self._tracked:
                # History for a new signal starts now; the next scrape must not come from the cache.
                self._tracked.update(fields)
                self._last_scrape = None
            self._scrape_if_due()
            now = self._clock()
            horizon = now - timedelta(seconds=window_seconds if window_seconds > 0 else self._lookback)
            series: list[GpuSeries] = []
            for key, metrics in self._history.items():
                gpu = GpuSeries(*key)
                # Under Auto, the first field this GPU has history of (MIG: GR_ENGINE_ACTIVE only).
                field = next((f for f in fields if metrics.get(f)), fields[0])
                gpu.signal, gpu.signal_refused = _since(metrics.get(field), horizon)
                gpu.signal_name = field
                gpu.memory, _ = _since(metrics.get(FB_USED), horizon)
                gpu.power, _ = _since(metrics.get(POWER_USAGE), horizon)
                series.append(gpu)
        return summarise_pods(series, over, window_seconds)

    def _scrape_if_due(self) -> None:
        now = self._clock()
        if self._last_scrape is not None and now - self._last_scrape < self._cache:
            return
        urls = list(dict.fromkeys(self._lister()))
        if not urls:
            raise MetricsUnavailable(
                _SOURCE,
                "no dcgm-exporter endpoints were found",
                "check that dcgm-exporter runs on the GPU nodes and that the configured Service "
                "or pod selector finds it",
            )
        with ThreadPoolExecutor(max_workers=min(self._parallel, len(urls))) as pool:
            results = list(pool.map(self._scrape_one, urls))
        errors = {url: error for url, (_, error) in zip(urls, results, strict=True) if error}
        self.last_errors = errors
        self.scrapes += 1
        if len(errors) == len(urls):
            first_url, first_error = next(iter(errors.items()))
            raise MetricsUnavailable(
                _SOURCE,
                f"all {len(urls)} exporter endpoint(s) failed, e.g. {first_url}: {first_error}",
                "check that dcgm-exporter is running and reachable from the operator",
            )
        # Series from one GPU seen twice (two URLs for one exporter) collapse into one key below.
        for series_list, _ in results:
            self._ingest(series_list, now)
        self._prune(now)
        self._last_scrape = now

    def _scrape_one(self, url: str) -> tuple[list[ScrapedSeries], str | None]:
        try:
            body = self._fetch(url, self._timeout)
            exposition = parse_exposition(body, max_series=self._max_series)
        except ExpositionParseError as exc:
            return [], f"unreadable exposition, {exc}"
        except (requests.RequestException, ValueError, OSError) as exc:
            return [], f"{exc.__class__.__name__}: {exc}"
        return [s for s in exposition.series if canonical_name(s.name) in self._tracked], None

    def _ingest(self, series: Sequence[ScrapedSeries], scraped_at: datetime) -> None:
        seen: set[tuple[_GpuKey, str]] = set()
        # A /federate endpoint (or a relabelling proxy) may carry exported_* labels, as Prometheus does.
        exporters = exporter_pods(s.labels for s in series) if self._shape.fixed is None else set()
        for item in series:
            owner, _ = self._shape.owner(item.labels, exporters.__contains__)
            if owner is None:
                continue  # idle GPU capacity, or the exporter's own pod: no workload to attribute it to
            name = canonical_name(item.name)
            key = (owner[0], owner[1], gpu_identity(item.labels))
            if (key, name) in seen:
                continue
            seen.add((key, name))
            at = (
                datetime.fromtimestamp(item.timestamp_ms / 1000, UTC)
                if item.timestamp_ms is not None
                else scraped_at
            )
            points = self._history.setdefault(key, {}).setdefault(name, deque())
            if points and points[-1].at >= at:
                continue  # the exporter has not sampled again since the last scrape
            refused = rejection(name, item.value, item.labels)
            if refused is not None and self._on_rejected is not None:
                self._on_rejected(refused)
            points.append(_Point(at, None if refused is not None else to_percent(name, item.value)))

    def _prune(self, now: datetime) -> None:
        oldest = now - self._history_span
        for key in list(self._history):
            metrics = self._history[key]
            for name in list(metrics):
                points = metrics[name]
                while points and points[0].at < oldest:
                    points.popleft()
                if not points:
                    del metrics[name]
            if not metrics:
                del self._history[key]


def _since(points: deque[_Point] | None, horizon: datetime) -> tuple[list[tuple[datetime, float]], bool]:
    """The readings after ``horizon``, and whether every value there was refused."""
    recent = [p for p in points or () if p.at > horizon]
    readings = [(p.at, p.value) for p in recent if p.value is not None]
    return readings, bool(recent) and not readings


# -- endpoint discovery (the only part that talks to the Kubernetes API) ----------------------------


def endpoint_slice_lister(
    api_client: Any, namespace: str, service: str, port: int | str = 9400, path: str = "/metrics"
) -> EndpointLister:
    """URLs of the ready endpoints behind a Service, from its EndpointSlices."""
    from kubernetes import client

    def list_urls() -> list[str]:
        try:
            slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={service}"
            )
        except (client.ApiException, urllib3.exceptions.HTTPError) as exc:
            # Not knowing the exporters is not "no GPUs": every workload holds, and says what to fix.
            reason = f"HTTP {exc.status} {exc.reason}" if isinstance(exc, client.ApiException) else str(exc)
            raise MetricsUnavailable(
                _SOURCE,
                f"the EndpointSlices of Service {namespace}/{service} could not be listed ({reason})",
                f"grant the operator `list endpointslices` in {namespace} (the chart does when "
                "dcgm.service is set) and check that the API server is reachable",
            ) from exc
        urls: list[str] = []
        for item in slices.items:
            number = _slice_port(item.ports or [], port)
            if number is None:
                continue
            for endpoint in item.endpoints or []:
                if endpoint.conditions is not None and endpoint.conditions.ready is False:
                    continue
                urls.extend(_url(address, number, path) for address in endpoint.addresses or [])
        return sorted(urls)

    return list_urls


def _slice_port(ports: Sequence[Any], wanted: int | str) -> int | None:
    if isinstance(wanted, int):
        return wanted
    for port in ports:
        if port.name == wanted:
            return int(port.port)
    return None


def _url(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"
