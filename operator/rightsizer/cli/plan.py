"""`rightsizer plan`: the consolidation planner as a dry run on a snapshot file or the live cluster.

Reads ``kubectl get nodes,pods,pdb -A -o json`` (from a file or stdin) with optional GPUNodePool
documents (read as the operator reads them: the API's model, then the core's policy), or, with
``--live``, the cluster exactly as the operator's consolidation reads it (nodes, pods, PDBs,
GPUNodePools and what GPUWorkloads say of their pods, through the same reader), plus optional per-pod
GPU activity, and prints the plan as a table or as one JSON object. Nothing in the
cluster is changed. Exit codes: 0 plan printed, 2 bad input, 1 the cluster could not be read.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import yaml

from rightsizer.core.errors import RightsizerError
from rightsizer.core.planner import Plan, PlanInput, PlannerOptions, plan
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot_parsing import read_time, snapshot_from_json
from rightsizer.runtime.mapping import read_pools

if TYPE_CHECKING:
    from rightsizer.adapters.cluster_snapshot import ClusterState

EXIT_BAD_INPUT = 2
EXIT_UNREADABLE = 1


class BadInput(Exception):
    """Input the user must fix; printed without a traceback, exit code 2."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="dry-run the GPU node consolidation planner",
        description=(
            "Show which nodes would be drained and removed, where each pod would go, and the cost per hour "
            "before and after. Nothing is changed."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--snapshot",
        metavar="FILE",
        help="JSON of `kubectl get nodes,pods,pdb -A -o json` ('-' reads standard input)",
    )
    source.add_argument(
        "--live",
        action="store_true",
        help="read the cluster as the operator does, its GPUNodePools and GPUWorkloads too (read-only)",
    )
    parser.add_argument(
        "--pools",
        metavar="FILE",
        help="GPUNodePool documents (YAML or JSON, several allowed), validated as the API server does",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text", help="output format")
    parser.add_argument("--now", metavar="RFC3339", help="plan as of this time (default: the current time)")
    parser.add_argument(
        "--activity", metavar="FILE", help='per-pod GPU utilisation in percent, JSON {"namespace/pod": 3.5}'
    )
    parser.add_argument("--allow-local-storage", action="store_true", help="move pods with emptyDir/hostPath")
    parser.add_argument("--allow-training-disruption", action="store_true", help="move training pods too")
    parser.add_argument(
        "--any-gpu-model", action="store_true", help="let GPU pods move to a node with another GPU model"
    )
    parser.add_argument(
        "--cpu-pods-on-gpu-nodes",
        action="store_true",
        help="let CPU-only pods from CPU nodes use GPU nodes' spare room (they may then pin GPU nodes)",
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig for --live")
    parser.add_argument("--context", help="kubeconfig context for --live")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        inputs = _inputs(args)
    except BadInput as exc:
        print(f"rightsizer plan: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RightsizerError as exc:
        print(f"rightsizer plan: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ClusterUnreadable as exc:
        print(f"rightsizer plan: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    started = time.perf_counter()
    result = plan(inputs)
    result = result.timed(time.perf_counter() - started)
    if args.output == "json":
        # One write: json.dump writes each token on its own (hundreds of thousands for a large plan).
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        write_text(result, sys.stdout, now=inputs.now)
    return 0


class ClusterUnreadable(Exception):
    """The live cluster, or an input protection depends on, could not be read: no plan, as the
    operator drains nothing then."""


def _read(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {what} {path!r}: {exc}") from exc


@contextmanager
def _parsed_once() -> Iterator[None]:
    """A snapshot is hundreds of thousands of objects that live until the command exits. The cyclic
    collector would walk them again at every threshold as they are made (a second at 5,000 nodes),
    so it is paused while they are, and they are then set aside from later collections."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _inputs(args: argparse.Namespace) -> PlanInput:
    now = datetime.now(UTC)
    if args.now:
        parsed = read_time(args.now, "--now")
        if parsed is None:
            raise BadInput("--now needs an RFC 3339 time such as 2026-01-31T12:00:00Z")
        now = parsed
    pools = _pools(args.pools) if args.pools else None
    activity = _activity(args.activity) if args.activity else {}
    options = PlannerOptions(
        allow_local_storage=args.allow_local_storage,
        allow_training_disruption=args.allow_training_disruption,
        keep_gpu_model=not args.any_gpu_model,
        cpu_pods_on_gpu_nodes=args.cpu_pods_on_gpu_nodes,
    )
    if not args.live:
        with _parsed_once():
            snapshot = snapshot_from_json(_read(args.snapshot, "snapshot"))
        return PlanInput(snapshot=snapshot, now=now, pools=pools, gpu_activity=activity, options=options)
    # Imported here: the Kubernetes client costs a second a snapshot file does not need.
    from rightsizer.runtime.node_pools import pod_policies_of

    state = _live(args.kubeconfig, args.context)
    for name, problem in sorted(state.pool_errors.items()):
        print(f"rightsizer plan: GPUNodePool {name} is left out: {problem}", file=sys.stderr)
    return PlanInput(
        snapshot=state.snapshot,
        now=now,
        pools=pools if pools is not None else state.pools,
        gpu_activity=activity,
        pod_policies=pod_policies_of(state),
        options=options,
    )


def _live(kubeconfig: str | None, context: str | None) -> ClusterState:
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    from rightsizer.runtime.settings import Settings, SettingsError
    from rightsizer.runtime.wiring import api_client, cluster_reader

    try:
        settings = Settings.load()  # pools priced as the operator prices them
    except SettingsError as exc:
        raise BadInput(str(exc)) from exc
    try:
        state = cluster_reader(api_client(kubeconfig, context), settings).read()
    except (ApiException, RightsizerError, ConfigException, OSError) as exc:
        raise ClusterUnreadable(f"the cluster could not be read: {exc}") from exc
    if (unreadable := state.unreadable_summary()) is not None:
        raise ClusterUnreadable(
            f"could not read {unreadable}: the operator drains no node with pods until it can, so "
            "there is no plan to show"
        )
    return state


def _pools(path: str) -> tuple[PoolPolicy, ...]:
    text = _read(path, "pools file")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise BadInput(f"pools file {path!r} is not YAML/JSON: {exc}") from exc
    return read_pools(documents)


def _activity(path: str) -> dict[str, Decimal]:
    try:
        raw = json.loads(_read(path, "activity file"))
    except ValueError as exc:
        raise BadInput(f"activity file {path!r} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BadInput('activity file must be a JSON object {"namespace/pod": percent}')
    activity: dict[str, Decimal] = {}
    for key, value in raw.items():
        try:
            percent = Decimal(str(value))
        except InvalidOperation as exc:
            raise BadInput(f"activity of {key!r}: {value!r} is not a number") from exc
        if isinstance(value, bool) or not percent.is_finite() or not 0 <= percent <= 100:
            raise BadInput(f"activity of {key!r}: {value!r} is not a percentage 0..100")
        activity[str(key)] = percent
    return activity


# ---------------------------------------------------------------------------------------------
# Text output


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def write_text(result: Plan, out: TextIO, *, now: datetime) -> None:
    s = result.summary
    saving = s.cost_per_hour_before - s.cost_per_hour_after
    seconds = f"{s.plan_seconds:.3f}s" if s.plan_seconds is not None else "-"
    out.write(f"Consolidation plan as of {now.isoformat()} (dry run, planned in {seconds})\n\n")
    _table(
        ("", "BEFORE", "AFTER"),
        [
            ("nodes", str(s.nodes_before), str(s.nodes_after)),
            ("GPU nodes", str(s.gpu_nodes_before), str(s.gpu_nodes_after)),
            ("cost per hour", f"${s.cost_per_hour_before:.2f}", f"${s.cost_per_hour_after:.2f}"),
        ],
        out,
    )
    out.write(f"saves ${saving:.2f}/h; pods moved: {s.pods_moved}; ")
    out.write(f"pending pods without room: {s.pods_unplaceable}\n\n")
    out.write(f"ACTIONS ({len(result.actions)})\n")
    if result.actions:
        _table(
            ("#", "TYPE", "NODE", "POD", "TO NODE", "REASON"),
            [
                (str(n), a.type, a.node, a.pod or "-", a.to_node or "-", a.reason)
                for n, a in enumerate(result.actions, start=1)
            ],
            out,
        )
    else:
        out.write("none: nothing can be consolidated safely right now\n")
    out.write(f"\nSKIPPED ({len(result.skipped)})\n")
    if result.skipped:
        _table(
            ("NODE", "POD", "REASON"), [(k.node or "-", k.pod or "-", k.reason) for k in result.skipped], out
        )
    if result.recommendations:
        out.write(f"\nRECOMMENDATIONS ({len(result.recommendations)})\n")
        _table(
            ("NODE", "SAVES/H", "RECOMMENDATION"),
            [(r.node, f"${r.savings_per_hour:.2f}", r.message) for r in result.recommendations],
            out,
        )
