"""`rightsizer backtest`: what a GPUWorkload's replica decisions would have been over a timeline.

``--input FILE`` replays a timeline with no cluster, acting as Enforce whatever the spec's mode,
through the operator's own decision step (runtime/backtest.py documents the format). FILE is a
timeline document, or what the operator wrote with ``--record-decisions`` (JSON lines; pick one
workload with ``--workload NAMESPACE/NAME``).

``--workload NAMESPACE/NAME --since 7d`` builds the timeline from Prometheus instead: the
GPUWorkload's spec and its target's pods from the cluster, their GPU series and the target's
replica count over [now - since, now] at ``--step`` (runtime/history.py says how pods and counts
are found). Each step is one pass of an operator running at that interval.

``--spec FILE`` replays under another spec (a GPUWorkload manifest or its spec, YAML or JSON). Exit
codes: 0 decisions printed, 2 bad input or history that cannot be read (the message names which).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from rightsizer.adapters.metrics.history import PrometheusHistory
from rightsizer.api.durations import format_duration
from rightsizer.cli import backtest_history
from rightsizer.cli.backtest_history import HistoryRequest, HistoryUnavailable, read_history
from rightsizer.cli.charts import svg_chart
from rightsizer.core.errors import InvalidMetricQuery, MetricsUnavailable
from rightsizer.runtime.backtest import (
    BadTimeline,
    Replayed,
    Summary,
    Timeline,
    TimelineStep,
    parse_timeline,
    replay,
    summarise,
)
from rightsizer.runtime.decision_record import timeline_from_records
from rightsizer.runtime.settings import Settings, SettingsError
from rightsizer.runtime.wiring import api_client

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay a GPUWorkload's replica decisions over a recording or Prometheus history",
        description=(
            "Replay a timeline of observations through the operator's own replica decisions, acting as "
            "Enforce, and print one decision per step. Nothing in a cluster is changed."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE", help="timeline JSON ('-' reads standard input)")
    source.add_argument(
        "--since",
        metavar="DURATION",
        help="replay the workload's Prometheus history over this long until now, e.g. 7d, 12h, 30m",
    )
    parser.add_argument(
        "--workload",
        metavar="NAMESPACE/NAME",
        help="the GPUWorkload (with --since), or the workload to replay from a recording",
    )
    parser.add_argument("--spec", metavar="FILE", help="replay under this GPUWorkload spec instead")
    parser.add_argument("--output", choices=("json", "text", "csv"), default="text", help="format (text)")
    parser.add_argument(
        "--chart", metavar="FILE.html", help="also write an HTML chart of the replicas, replayed and ran"
    )
    defaults = Settings.model_fields
    parser.add_argument(
        "--interval",
        type=float,
        default=defaults["interval_seconds"].default,
        metavar="SECONDS",
        help="the operator's interval the timeline was taken at (a longer gap restarts the windows)",
    )
    history = parser.add_argument_group("with --since")
    history.add_argument(
        "--step", metavar="DURATION", help="one replayed pass per step, whole seconds (the --interval)"
    )
    history.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus base URL (the operator's setting, RIGHTSIZER_PROMETHEUS__URL)",
    )
    history.add_argument(
        "--prometheus-series-selector",
        metavar="MATCHERS",
        help='label matchers every GPU query adds, e.g. job="dcgm-exporter"',
    )
    history.add_argument(
        "--pod-labels",
        metavar="SHAPE",
        help="series labels naming a GPU's pod: auto, new, old, exported or namespace=L,pod=L",
    )
    history.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.since is not None:
        return _run_history(args, datetime.now(UTC))
    if not args.interval > 0:
        print("error: --interval must be positive", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        document = _timeline_document(_read(args.input), args.workload)
        if args.spec:
            document = {**document, "spec": _spec(_read(args.spec), args.spec)}
        timeline = parse_timeline(document)
    except (BadInput, BadTimeline) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # Samples older than two intervals are stale, as the operator judges them by default.
    decisions = replay(timeline, args.interval, timedelta(seconds=2 * args.interval))
    totals = summarise(timeline, decisions, args.interval)
    write(decisions, totals, args.output, sys.stdout)
    if args.chart:
        Path(args.chart).write_text(chart(timeline, decisions, totals))
    return 0


class BadInput(Exception):
    """Input the user must fix; printed without a traceback, exit code 2."""


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from exc


def _timeline_document(text: str, workload: str | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise BadInput(f"input is neither JSON nor JSON lines: {whole}") from whole
    names = sorted({str(r.get("workload")) for r in records if isinstance(r, dict)})
    if workload is None and len(names) != 1:
        raise BadInput(
            f"the recording holds {len(names)} workloads ({', '.join(names)}): pick one with --workload"
        )
    try:
        return timeline_from_records(records, workload or names[0])
    except (LookupError, KeyError, TypeError) as exc:
        raise BadInput(f"not a recording of decisions: {exc}") from exc


def _spec(text: str, path: str) -> Any:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"{path} is not YAML or JSON: {exc}") from exc
    if isinstance(document, dict) and "spec" in document:
        return document["spec"]
    return document


def write(
    decisions: Sequence[Replayed],
    totals: Summary,
    fmt: str,
    out: TextIO,
    history: Mapping[str, Any] | None = None,
) -> None:
    """The decisions and summary; `history` says where a Prometheus timeline came from (a "history"
    object in JSON, lines before the table in text, standard error beside CSV)."""
    rows = [d.as_dict() for d in decisions]
    if fmt == "json":
        document: dict[str, Any] = {"decisions": rows, "summary": totals.as_dict()}
        if history is not None:
            document["history"] = dict(history)
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        if history is not None:
            print(backtest_history.notes_text(history), file=sys.stderr)
        writer = csv.DictWriter(out, fieldnames=["at", "replicas", "action", "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        if history is not None:
            out.write(backtest_history.notes_text(history) + "\n\n")
        _text(rows, out)
        out.write("\n" + _summary_text(totals) + "\n")


def _text(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    out.write(f"{'AT':<21} {'REPLICAS':>8}  {'ACTION':<12} REASON\n")
    for row in rows:
        out.write(f"{row['at']:<21} {row['replicas']:>8}  {row['action']:<12} {row['reason']}\n")


def _summary_text(totals: Summary) -> str:
    lines = [f"GPU-hours: {totals.gpu_hours_ran:.2f} ran, {totals.gpu_hours_replayed:.2f} replayed"]
    if totals.cost_saved is not None:
        lines.append(f"cost saved: {totals.cost_saved:.2f} {totals.currency or ''}".rstrip())
    if totals.minutes_above_target_ran is not None and totals.minutes_above_target_replayed is not None:
        lines.append(
            f"minutes above target: {totals.minutes_above_target_ran:.1f} ran, "
            f"{totals.minutes_above_target_replayed:.1f} replayed (the load that ran, over the replicas)"
        )
    return "\n".join(lines)


def chart(timeline: Timeline, decisions: Sequence[Replayed], totals: Summary) -> str:
    def running(step: TimelineStep) -> int:
        return sum(1 for p in step.pods if p.running)

    series = [
        {"metric": {"series": "replayed"}, "values": [(d.at.timestamp(), d.replicas) for d in decisions]},
        {"metric": {"series": "ran"}, "values": [(s.at.timestamp(), running(s)) for s in timeline.steps]},
    ]
    head = "<!doctype html><meta charset='utf-8'><title>GPU Rightsizer backtest</title>"
    summary = html.escape(_summary_text(totals)).replace("\n", "<br>")
    body = svg_chart("Replicas over time", series, "series", "") + f"<p>{summary}</p>"
    return f"{head}<body style='font-family:sans-serif'><h1>Backtest</h1>{body}</body>"


# -- Prometheus history ---------------------------------------------------------------------------


def _run_history(args: argparse.Namespace, now: datetime) -> int:
    """`--workload NS/NAME --since D`: the timeline from the cluster and Prometheus, then the same
    replay and summary as a recording's. `now` is read once, by the caller."""
    try:
        since = backtest_history.parse_span("--since", args.since)
        given = args.step is not None
        step = backtest_history.parse_span("--step", args.step) if given else timedelta(seconds=args.interval)
        if step.total_seconds() < 1 or step.total_seconds() != int(step.total_seconds()):
            raise BadInput(f"--step {format_duration(step)}: must be whole seconds, at least 1s")
        if since < step:
            raise BadInput(f"--since {args.since} is shorter than one step ({format_duration(step)})")
        namespace, name = backtest_history.parse_workload(args.workload)
        settings = Settings.load(
            interval_seconds=step.total_seconds(),
            prometheus={"url": args.prometheus_url, "series_selector": args.prometheus_series_selector},
            dcgm={"pod_labels": args.pod_labels},
        )
        spec = _spec(_read(args.spec), args.spec) if args.spec else None
        if spec is not None and not isinstance(spec, dict):
            raise BadInput(f"{args.spec} holds no GPUWorkload spec")
        prom = settings.prometheus
        prometheus = PrometheusHistory.connect(
            prom.url,
            bearer_token_file=prom.bearer_token_file,
            ca_file=prom.ca_file,
            insecure_skip_verify=prom.insecure_skip_verify,
            timeout_seconds=prom.timeout_seconds,
            pod_labels=settings.dcgm.label_shape,
            series_selector=prom.series_selector,
        )
        max_age = timedelta(seconds=settings.max_metric_age)
        request = HistoryRequest(namespace, name, since, int(step.total_seconds()), max_age, now, spec)
        read = read_history(request, lambda: api_client(args.kubeconfig), prometheus)
    except (
        BadInput,
        BadTimeline,
        SettingsError,
        HistoryUnavailable,
        MetricsUnavailable,
        InvalidMetricQuery,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    timeline = read.history.timeline
    interval = step.total_seconds()
    decisions = replay(timeline, interval, max_age)
    totals = summarise(timeline, decisions, interval)
    write(decisions, totals, args.output, sys.stdout, backtest_history.notes(read, prom.url))
    if args.chart:
        Path(args.chart).write_text(chart(timeline, decisions, totals))
    return 0
