"""Builds the operator's parts from Settings: API client, metrics sources, reconcilers, telemetry."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client, config

from rightsizer.adapters.cluster_cache import ApiTransport, ClusterCache
from rightsizer.adapters.kube import KubeWorkloads
from rightsizer.adapters.metrics.base import GpuMetricsSource
from rightsizer.adapters.metrics.dcgm import (
    DcgmSource,
    EndpointLister,
    endpoint_slice_lister,
    static_endpoints,
)
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.adapters.metrics.readings import Rejection
from rightsizer.runtime.node_pools import PoolManager, build_pool_manager
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


def build(settings: Settings, kubeconfig: str | None = None) -> Operator:
    api = api_client(kubeconfig)
    telemetry = Telemetry()
    kube = KubeWorkloads(api)
    sources = metrics_sources(settings, api, telemetry)
    reconciler = WorkloadReconciler(kube, sources, settings, telemetry)
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
