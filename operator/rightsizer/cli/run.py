"""`rightsizer run`: the operator, against any kubeconfig (or in-cluster credentials)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from typing import Any

import kopf

from rightsizer.adapters.kube import ensure_cluster_peering
from rightsizer.handlers import consolidation as consolidation_handlers
from rightsizer.handlers import operator as operator_handlers
from rightsizer.handlers import workloads as workload_handlers
from rightsizer.runtime import telemetry, wiring
from rightsizer.runtime.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run the operator", description=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--interval", type=float, dest="interval_seconds", help="seconds between passes (30)")
    p.add_argument("--namespace", action="append", dest="namespaces", help="watch only these (repeatable)")
    p.add_argument("--dry-run", action="store_true", default=None, help="decide and report, change nothing")
    p.add_argument(
        "--record-decisions",
        metavar="FILE",
        help="append each replica decision's inputs and result to FILE (JSON lines, for backtest)",
    )
    p.add_argument("--prometheus-url", help="Prometheus base URL")
    p.add_argument(
        "--prometheus-timeout", type=float, help="seconds a Prometheus query may take; slower means hold (10)"
    )
    p.add_argument(
        "--prometheus-series-selector",
        help='label matchers every GPU query adds, e.g. job="dcgm-exporter" (none)',
    )
    p.add_argument(
        "--pod-labels",
        help="series labels naming a GPU's pod: auto, new, old, exported or "
        "namespace=LABEL,pod=LABEL,container=LABEL (auto)",
    )
    p.add_argument(
        "--metrics-source",
        choices=("Prometheus", "DCGM"),
        help="where consolidation reads GPU activity: Prometheus, or the exporters directly (Prometheus)",
    )
    p.add_argument("--dcgm-endpoint", action="append", help="dcgm-exporter /metrics URL (repeatable)")
    p.add_argument(
        "--dcgm-service",
        metavar="NAMESPACE/NAME",
        help="dcgm-exporter Service whose EndpointSlices list the exporters to scrape",
    )
    p.add_argument("--dcgm-port", type=int, help="the exporters' port in those EndpointSlices (9400)")
    p.add_argument(
        "--dcgm-max-series", type=int, help="refuse an exporter scrape with more series than this (200000)"
    )
    p.add_argument("--metrics-port", type=int, help="port of the operator's /metrics (8080)")
    p.add_argument("--metrics-address", help="address /metrics binds to (0.0.0.0)")
    p.add_argument("--health-port", type=int, help="port of /healthz (8081)")
    p.add_argument(
        "--api-connections",
        type=int,
        help="most connections kopf opens to the API server for requests, watches not counted (32)",
    )
    p.add_argument("--standalone", action="store_true", default=None, help="no peering (one replica only)")
    p.add_argument("--peering-name", help="kopf peering object shared by the replicas (gpu-rightsizer)")
    p.add_argument("--peering-priority", type=int, help="this replica's priority (default: random)")
    p.add_argument(
        "--consolidation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bin-pack and scale the nodes of GPUNodePools (on)",
    )
    p.add_argument("--consolidation-interval", type=float, help="seconds between passes per GPUNodePool (60)")
    p.add_argument("--drain-timeout", type=float, help="seconds a drain waits for replacements (300)")
    p.add_argument(
        "--removal-timeout",
        type=float,
        help="seconds after which a node the provider was asked to remove counts as stuck (900)",
    )
    p.add_argument(
        "--scale-up-cooldown",
        type=float,
        help="seconds after adding nodes to a pool before adding more (60)",
    )
    p.add_argument("--drain-workers", type=int, help="drains running at once, on their own threads (2)")
    p.add_argument(
        "--intent-lease",
        type=float,
        help="seconds a drain intent stays this replica's without renewal; then another may take over (120)",
    )
    p.add_argument(
        "--drain-backoff",
        type=float,
        help="seconds a node is left alone after a failed drain, doubling (600)",
    )
    p.add_argument(
        "--pool-selector",
        action="append",
        metavar="KEY=VALUE",
        help="manage only GPUNodePools with this label (repeatable; default: all)",
    )
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:
        # kopf reports every index update and timer run at INFO; our own log says what was decided.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    flags: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "peering_name",
            "peering_priority",
            "interval_seconds",
            "namespaces",
            "dry_run",
            "metrics_port",
            "metrics_address",
            "health_port",
            "standalone",
            "api_connections",
            "metrics_source",
            "record_decisions",
        )
    }
    flags["prometheus"] = {
        "url": args.prometheus_url,
        "timeout_seconds": args.prometheus_timeout,
        "series_selector": args.prometheus_series_selector,
    }
    flags["dcgm"] = {
        "endpoints": args.dcgm_endpoint,
        "service": args.dcgm_service,
        "port": args.dcgm_port,
        "max_series_per_scrape": args.dcgm_max_series,
        "pod_labels": args.pod_labels,
    }
    flags["consolidation"] = {
        "enabled": args.consolidation,
        "interval_seconds": args.consolidation_interval,
        "drain_timeout_seconds": args.drain_timeout,
        "drain_workers": args.drain_workers,
        "intent_lease_seconds": args.intent_lease,
        "removal_timeout_seconds": args.removal_timeout,
        "scale_up_cooldown_seconds": args.scale_up_cooldown,
        "drain_backoff_seconds": args.drain_backoff,
        "pool_selector": dict(s.split("=", 1) for s in args.pool_selector) if args.pool_selector else None,
    }
    try:
        settings = Settings.load(**flags)
    except SettingsError as exc:
        print(f"rightsizer run: {exc}", file=sys.stderr)
        return 2
    op = wiring.build(settings, kubeconfig=args.kubeconfig)
    registry = kopf.OperatorRegistry()
    operator_handlers.register(
        registry,
        settings,
        ensure_peering=lambda name: ensure_cluster_peering(op.api, name),
        credentials=lambda: _connection(wiring.credentials(op.api)),
    )
    workload_handlers.register(registry, op.workloads, settings.interval_seconds, op.cache)
    if settings.consolidation.enabled:
        consolidation_handlers.register(
            registry, op.pools, settings.consolidation.interval_seconds, bool(settings.standalone)
        )
    server = telemetry.serve(op.telemetry, settings.metrics_address, settings.metrics_port)
    logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", *server.server_address[:2])
    kopf.run(
        registry=registry,
        standalone=settings.standalone,
        # Naming a peering makes it mandatory in kopf, which would pause a standalone operator forever.
        peering_name=None if settings.standalone else settings.peering_name,
        # Equal priorities make kopf pause every replica; a random one lets exactly one lead.
        priority=settings.peering_priority
        if settings.peering_priority is not None
        else secrets.randbelow(2**30),
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )
    return 0


def _connection(c: wiring.Credentials) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=c.server,
        ca_path=c.ca_path,
        insecure=c.insecure,
        scheme="Bearer" if c.token else None,
        token=c.token,
        certificate_path=c.certificate_path,
        private_key_path=c.private_key_path,
    )
