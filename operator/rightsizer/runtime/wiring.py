"""Builds the operator's parts from Settings: API client, metrics sources, reconcilers, telemetry."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from kubernetes import client, config

from rightsizer.adapters.cluster_cache import ApiTransport, ClusterCache
from rightsizer.adapters.cluster_snapshot import ClusterReader
from rightsizer.adapters.kube import KubeWorkloads
from rightsizer.adapters.metrics.base import AUTO_SIGNAL, GpuMetricsSource
from rightsizer.adapters.metrics.dcgm import (
    DcgmSource,
    EndpointLister,
    endpoint_slice_lister,
    static_endpoints,
)
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.adapters.metrics.readings import Rejection
from rightsizer.adapters.node_drain import KubeNodeDrain
from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.adapters.nodepools.registry import provider_for
from rightsizer.adapters.replica_surge import KubeSurges
from rightsizer.core.drain_backoff import BackoffPolicy
from rightsizer.core.errors import InvalidPool
from rightsizer.runtime import mapping
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.decision_record import JsonLinesRecorder
from rightsizer.runtime.drain_runner import DrainRunner
from rightsizer.runtime.drain_steps import ExecutorSettings
from rightsizer.runtime.node_pools import PassSettings, PoolManager
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workloads import WorkloadReconciler


@dataclass
class Operator:
    settings: Settings
    api: client.ApiClient
    telemetry: Telemetry
    workloads: WorkloadReconciler
    pools: PoolManager
    cache: ClusterCache


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In a pod: the ServiceAccount token; elsewhere: KUBECONFIG / --kubeconfig (and its context)."""
    if kubeconfig or context:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def metrics_sources(
    settings: Settings, api: client.ApiClient, telemetry: Telemetry
) -> dict[str, GpuMetricsSource]:
    shape = settings.dcgm.label_shape

    def rejected(reason: Rejection) -> None:
        telemetry.samples_rejected.inc(reason.value)

    prom = settings.prometheus
    sources: dict[str, GpuMetricsSource] = {
        "Prometheus": PrometheusSource.connect(
            prom.url,
            # The only credential the operator reads: a mounted token file, named explicitly in settings.
            bearer_token_file=prom.bearer_token_file,
            ca_file=prom.ca_file,
            insecure_skip_verify=prom.insecure_skip_verify,
            timeout_seconds=prom.timeout_seconds,
            pod_labels=shape,
            series_selector=prom.series_selector,
            on_rejected=rejected,
        )
    }
    lister = dcgm_endpoints(settings, api)
    if lister is not None:
        sources["DCGM"] = DcgmSource(
            lister,
            pod_labels=shape,
            on_rejected=rejected,
            timeout_seconds=settings.dcgm.timeout_seconds,
            max_series_per_scrape=settings.dcgm.max_series_per_scrape,
        )
    return sources


def dcgm_endpoints(settings: Settings, api: client.ApiClient) -> EndpointLister | None:
    """Static URLs, else the ready endpoints of the configured Service (its EndpointSlices)."""
    dcgm = settings.dcgm
    if dcgm.endpoints:
        return static_endpoints(dcgm.endpoints)
    if dcgm.service:
        namespace, _, name = dcgm.service.partition("/")
        return endpoint_slice_lister(api, namespace, name, port=dcgm.port)
    return None


def cluster_reader(api: client.ApiClient, settings: Settings) -> ClusterReader:
    """The reader of the pool passes: GPUNodePools priced with the operator's pricing defaults (a
    pool without wattsPerGpu draws the default watts). `rightsizer report` reads through it too, so
    both price a pool alike."""
    return ClusterReader(api, partial(mapping.read_pool, defaults=settings.pricing))


def pool_provider(api: client.ApiClient, document: Mapping[str, Any]) -> NodePoolProvider:
    """The provider of a stored GPUNodePool, read through the API's model like the rest of it."""
    try:
        return provider_for(api, mapping.pool_model(document))
    except InvalidPool as exc:
        raise ProviderError(str(exc)) from exc


def build_pool_manager(
    api: client.ApiClient,
    settings: Settings,
    telemetry: Telemetry,
    activity_source: GpuMetricsSource | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PoolManager:
    edge = KubeNodeDrain(api)
    options = settings.consolidation
    manager: PoolManager

    def provider_of(pool: str) -> NodePoolProvider | None:
        return manager.provider(pool)

    executor = Executor(
        edge,
        provider_of,
        clock=clock,
        sleep=time.sleep,
        settings=ExecutorSettings(
            drain_timeout=timedelta(seconds=options.drain_timeout_seconds),
            poll_seconds=options.poll_seconds,
            lease=timedelta(seconds=options.intent_lease_seconds),
        ),
        surges=KubeSurges(api),
    )
    manager = PoolManager(
        reader=cluster_reader(api, settings),
        executor=executor,
        provider_for=lambda document: pool_provider(api, document),
        live_nodes=edge.nodes,
        telemetry=telemetry,
        clock=clock,
        activity=(
            fleet_activity(activity_source, settings.max_metric_age, clock)
            if activity_source is not None
            else None
        ),
        settings=PassSettings(
            max_nodes_per_pass=options.max_nodes_per_pass,
            scale_up_cooldown=timedelta(seconds=options.scale_up_cooldown_seconds),
            dry_run=settings.dry_run,
            removal_timeout=timedelta(seconds=options.removal_timeout_seconds),
            drain_backoff=BackoffPolicy(
                base=timedelta(seconds=options.drain_backoff_seconds),
                cap=timedelta(seconds=max(options.drain_backoff_seconds, options.drain_backoff_cap_seconds)),
            ),
        ),
        pool_selector=dict(options.pool_selector),
        drains=DrainRunner(options.drain_workers),
    )
    return manager


def fleet_activity(
    source: GpuMetricsSource, max_age_seconds: float, clock: Callable[[], datetime]
) -> Callable[[], dict[str, Decimal]]:
    """Per-pod GPU utilisation (percent) of each pod's busiest GPU, from one fleet query: a pod is
    idle only when all its GPUs are. Stale or NaN samples are left out, so those pods count as
    unknown (never idle)."""

    def read() -> dict[str, Decimal]:
        now = clock()
        # Auto: MIG instances report GR_ENGINE_ACTIVE only; read by GPU_UTIL they would all be unknown.
        samples = source.fleet_samples(signal=AUTO_SIGNAL)
        return {
            f"{namespace}/{pod}": Decimal(str(round(sample.peak, 3)))
            for (namespace, pod), sample in samples.items()
            if sample.is_fresh(now, max_age_seconds) and not math.isnan(sample.peak)
        }

    return read


def build(settings: Settings, kubeconfig: str | None = None) -> Operator:
    api = api_client(kubeconfig)
    telemetry = Telemetry()
    kube = KubeWorkloads(api)
    sources = metrics_sources(settings, api, telemetry)
    recorder = JsonLinesRecorder(settings.record_decisions) if settings.record_decisions else None
    reconciler = WorkloadReconciler(kube, sources, settings, telemetry, recorder)
    pools = build_pool_manager(api, settings, telemetry, sources.get(settings.metrics_source))
    # Its own client: the long-lived watches must not hold the connections the passes' requests use.
    cache = ClusterCache(ApiTransport(api_client(kubeconfig)), settings.namespaces)
    return Operator(settings, api, telemetry, reconciler, pools, cache)


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def credentials(api: client.ApiClient) -> Credentials:
    """The API client's server and identity, so kopf's watches log in as the same identity."""
    cfg = api.configuration
    header = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = None
    if header:
        token = header.split(" ", 1)[1] if header.lower().startswith("bearer ") else header
    return Credentials(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )
