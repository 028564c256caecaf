"""`rightsizer backtest`: what a GPUWorkload's replica decisions would have been over a timeline.

``--input FILE`` replays a timeline with no cluster, acting as Enforce whatever the spec's mode,
through the operator's own decision step (runtime/backtest.py documents the format). FILE is a
timeline document, or what the operator wrote with ``--record-decisions`` (JSON lines; pick one
workload with ``--workload NAMESPACE/NAME``). ``--spec FILE`` replays under another spec (a
GPUWorkload manifest or its spec, YAML or JSON). Exit codes: 0 decisions printed, 2 bad input (the
message names the field).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from rightsizer.cli.charts import svg_chart
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
from rightsizer.runtime.settings import Settings

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay a GPUWorkload's replica decisions over a recorded timeline",
        description=(
            "Replay a timeline of observations through the operator's own replica decisions, acting as "
            "Enforce, and print one decision per step. Nothing in a cluster is read or changed."
        ),
    )
    parser.add_argument(
        "--input", required=True, metavar="FILE", help="timeline JSON ('-' reads standard input)"
    )
    parser.add_argument(
        "--workload", metavar="NAMESPACE/NAME", help="the workload to replay from a recording"
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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


def write(decisions: Sequence[Replayed], totals: Summary, fmt: str, out: TextIO) -> None:
    rows = [d.as_dict() for d in decisions]
    if fmt == "json":
        json.dump({"decisions": rows, "summary": totals.as_dict()}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=["at", "replicas", "action", "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
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
