"""`rightsizer report`: per workload and per pool, GPUs allocated vs busy, cost per hour, idle cost,
and savings against a saved baseline — from any cluster the operator manages. Read-only. Pools are
priced as the operator prices them, with the same RIGHTSIZER_PRICING__* settings (e.g. the default
watts per GPU)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from rightsizer.adapters.cluster_snapshot import ClusterReader, failure_reason
from rightsizer.adapters.kube_retry import KubeApiUnavailable
from rightsizer.core.errors import RightsizerError
from rightsizer.core.pools import assign_pools, default_assignment
from rightsizer.core.report import Report, build_report, savings
from rightsizer.runtime.settings import Settings, SettingsError
from rightsizer.runtime.wiring import api_client, cluster_reader


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("report", help="cost and GPU use per workload and pool", description=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--output", choices=("table", "json", "csv"), default="table")
    p.add_argument("--baseline", metavar="FILE", help="a previous `--output json` report: show savings since")
    p.set_defaults(func=run)


class ReportUnreadable(Exception):
    """Something the report sums up could not be read: no report rather than a wrong one."""


def collect(reader: ClusterReader) -> Report:
    """The cluster as the operator's consolidation reads it (same reader, pools, prices: see
    :func:`~rightsizer.runtime.wiring.cluster_reader`), plus every GPUWorkload's status."""
    try:
        state = reader.read()
        workloads = reader.workload_documents()
    except (ApiException, KubeApiUnavailable, RightsizerError) as exc:
        raise ReportUnreadable(f"the cluster could not be read: {failure_reason(exc)}") from exc
    for name, why in sorted(state.pool_errors.items()):
        print(f"rightsizer report: GPUNodePool {name} left out: {why}", file=sys.stderr)
    nodes = state.snapshot.nodes
    assignment = assign_pools(nodes, state.pools) if state.pools else default_assignment(nodes)
    return build_report(state.snapshot, workloads, assignment)


def _fmt(value: object) -> str:
    if value is None:
        return "-"  # unknown
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral() else f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


WORKLOAD_HEADERS = ["NAMESPACE", "WORKLOAD", "TYPE", "MODE", "REPLICAS", "GPUS", "BUSY", "UTIL%", "$/H"]
WORKLOAD_HEADERS += ["IDLE $/H", "TO DATE", "LAST DECISION"]
POOL_HEADERS = ["POOL", "NODES", "GPUS", "REQUESTED", "BUSY", "$/H", "IDLE $/H"]


def render_table(report: Report, baseline: dict[str, Any] | None) -> str:
    wl_rows: list[list[object]] = [
        [
            w.namespace,
            w.name,
            w.type,
            w.mode,
            w.replicas,
            w.gpus_allocated,
            w.gpus_busy,
            w.utilization,
            w.cost_per_hour,
            w.idle_cost_per_hour,
            w.cost_to_date,
            w.last_decision,
        ]
        for w in report.workloads
    ]
    pool_rows: list[list[object]] = [
        [
            p.pool,
            p.nodes,
            p.gpus_allocatable,
            p.gpus_requested,
            p.gpus_busy,
            p.cost_per_hour,
            p.idle_cost_per_hour,
        ]
        for p in report.pools
    ]
    total, idle = _fmt(report.total_cost_per_hour), _fmt(report.total_idle_cost_per_hour)
    out = ["Workloads", _table(WORKLOAD_HEADERS, wl_rows), "", "Pools", _table(POOL_HEADERS, pool_rows), ""]
    out.append(f"Total: {total}/h, of which idle GPUs {idle}/h")
    if baseline is not None:
        s = savings(baseline, report.to_json())
        out.append(
            f"Before: {s['costPerHourBefore']:.2f}/h on {s['nodesBefore']} nodes; "
            f"after: {s['costPerHourAfter']:.2f}/h on {s['nodesAfter']} nodes; "
            f"saved {s['savedPerHour']:.2f}/h ({s['savedPercent']:.1f}%); "
            f"idle {s['idleCostPerHourBefore']:.2f}/h → {s['idleCostPerHourAfter']:.2f}/h"
        )
        before, after = (_rate(s[f"workloadCostPerHour{when}"]) for when in ("Before", "After"))
        out.append(
            f"Workloads: {before}/h → {after}/h "
            "(GPUs they hold, energy and overhead; freed GPUs are saved once their nodes go)"
        )
    return "\n".join(out)


def _rate(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "unknown"


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "kind",
            "namespace",
            "name",
            "replicas_or_nodes",
            "gpus",
            "gpus_busy",
            "cost_per_hour",
            "idle_cost_per_hour",
        ]
    )
    for w in report.workloads:
        writer.writerow(
            [
                "workload",
                w.namespace,
                w.name,
                w.replicas,
                w.gpus_allocated,
                w.gpus_busy,
                w.cost_per_hour,
                w.idle_cost_per_hour,
            ]
        )
    for p in report.pools:
        writer.writerow(
            [
                "pool",
                "",
                p.pool,
                p.nodes,
                p.gpus_allocatable,
                p.gpus_busy,
                p.cost_per_hour,
                p.idle_cost_per_hour,
            ]
        )
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    baseline = None
    if args.baseline:
        try:
            baseline = json.loads(Path(args.baseline).read_text())
        except (OSError, ValueError) as exc:
            print(f"rightsizer report: cannot read baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2
    try:
        # Pools priced as the operator prices them: its settings (RIGHTSIZER_*), e.g. default watts.
        settings = Settings.load()
    except SettingsError as exc:
        print(f"rightsizer report: {exc}", file=sys.stderr)
        return 2
    try:
        report = collect(cluster_reader(api_client(args.kubeconfig), settings))
    except ReportUnreadable as exc:
        print(f"rightsizer report: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        doc = report.to_json()
        if baseline is not None:
            doc["savings"] = savings(baseline, doc)
        print(json.dumps(doc, indent=2))
    elif args.output == "csv":
        print(render_csv(report), end="")
    else:
        print(render_table(report, baseline))
    return 0
