"""`rightsizer metrics inspect`: what the operator reads from exporter text or a live Prometheus.

    rightsizer metrics inspect --file dcgm.txt            # an exporter's /metrics, or /federate output
    rightsizer metrics inspect --prometheus http://prometheus:9090 --output json

Per pod: GPUs (or MIG instances), utilisation, the signal read and whether the GPU is shared; then
how many GPUs name no workload pod, which values were refused as not readings, and the label shape
found. Read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rightsizer.adapters.metrics.base import AUTO_SIGNAL
from rightsizer.adapters.metrics.inspection import Inspection, inspect_text, inspection, strip_elisions
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.adapters.metrics.series_shapes import LabelShape
from rightsizer.api.v1alpha1 import GpuSignal
from rightsizer.core.errors import ExpositionParseError, InvalidMetricQuery, MetricsUnavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("metrics", help="inspect the GPU metrics the operator reads")
    commands = p.add_subparsers(dest="metrics_command", required=True, metavar="COMMAND")
    inspect = commands.add_parser(
        "inspect",
        help="per pod: GPUs, utilisation, signal, shared",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples' lines
    )
    where = inspect.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", help="exporter text: a /metrics page or /federate output ('-': stdin)")
    where.add_argument("--prometheus", metavar="URL", help="ask a live Prometheus instead")
    inspect.add_argument(
        "--pod-labels", default="auto", help="auto, new, old, exported or namespace=L,pod=L,container=L"
    )
    inspect.add_argument(
        "--signal", default=AUTO_SIGNAL, choices=[str(s) for s in GpuSignal], help="field to read (Auto)"
    )
    inspect.add_argument("--series-selector", default="", help='Prometheus label matchers, e.g. job="dcgm"')
    inspect.add_argument("--output", choices=("text", "json"), default="text")
    inspect.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        shape = LabelShape.parse(args.pod_labels)
        result = (
            _from_prometheus(args, shape) if args.prometheus else _from_file(args.file, shape, args.signal)
        )
    except ExpositionParseError as exc:
        print(f"rightsizer metrics inspect: {args.file} is not exposition text: {exc}", file=sys.stderr)
        return 2
    except (InvalidMetricQuery, MetricsUnavailable, ValueError, OSError) as exc:
        print(f"rightsizer metrics inspect: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(result.as_text(), end="")
    return 0


def _from_file(path: str, shape: LabelShape, signal: str) -> Inspection:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8", errors="replace")
    text, elided = strip_elisions(text)
    if elided:
        print(f"warning: skipped {elided} '...' line(s): not exposition text", file=sys.stderr)
    return inspect_text(text, shape, signal, datetime.now(UTC))


def _from_prometheus(args: argparse.Namespace, shape: LabelShape) -> Inspection:
    source = PrometheusSource.connect(args.prometheus, pod_labels=shape, series_selector=args.series_selector)
    return inspection(source.gather(args.signal))
