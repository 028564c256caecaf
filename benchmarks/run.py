"""Planner benchmark: `python -m benchmarks.run` (or `python benchmarks/run.py`) from the repository root.

For each size (100 / 1,000 / 5,000 nodes) it generates a fragmented snapshot (benchmarks/generator.py),
then measures, in the same run:

* plan time: JSON text → Snapshot (parse) and Snapshot → Plan (plan), one core, wall clock;
* peak memory of parse + plan (tracemalloc, a separate pass because tracing slows Python down);
* nodes after the plan (one round: budget limits count across the whole plan, a PDB per drained
  node, as the operator drains one node after another's replacements are available), and after
  re-planning until nothing more moves (rounds: the plan is applied, evicted pods run where the plan
  said, PDBs have recovered, 15 minutes pass);
* the lower bound and the two baselines of benchmarks/baselines.py, with ratios.

Options: ``--sizes 100,1000`` ``--seed 7`` ``--max-rounds 10``.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `rightsizer` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from benchmarks.baselines import (
    RepackResult,
    first_fit_decreasing,
    lower_bound,
    most_allocated_replay,
    split,
)
from benchmarks.generator import generate
from rightsizer.core.planner import Plan, PlanInput, PlannerOptions, assignment_for, plan
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot import Snapshot
from rightsizer.core.snapshot_parsing import snapshot_from_json

TARGET_RATIO = 1.02
TARGET_SECONDS_5000 = 10.0
TARGET_PEAK_MIB = 1024.0


@dataclass(frozen=True)
class Rounds:
    first: Plan
    nodes_after: int
    rounds: int
    pods_moved: int
    cost_after: Decimal
    cpu_pods_on_gpu_nodes: int


@dataclass(frozen=True)
class Row:
    size: int
    pods: int
    parse_s: float
    plan_s: float
    peak_mib: float
    bound: int  # under the planner's default rule (CPU pods from CPU nodes stay on CPU nodes)
    bound_any: int  # any placement
    default: Rounds
    relaxed: Rounds  # with PlannerOptions(cpu_pods_on_gpu_nodes=True)
    ffd: RepackResult
    replay: RepackResult

    @property
    def before(self) -> int:
        return self.default.first.summary.nodes_before


def _plan(snapshot: Snapshot, pools: tuple[PoolPolicy, ...], now: datetime, options: PlannerOptions) -> Plan:
    return plan(PlanInput(snapshot=snapshot, now=now, pools=pools, options=options))


def converge(
    document: dict[str, Any],
    *,
    pools: tuple[PoolPolicy, ...],
    now: datetime,
    options: PlannerOptions,
    max_rounds: int,
    first: Plan | None = None,
) -> Rounds:
    """Plan, apply, wait 15 minutes, plan again... until a plan removes nothing."""
    current = first or _plan(snapshot_from_json(json.dumps(document)), pools, now, options)
    first = current
    rounds, moved = 1, current.summary.pods_moved
    while rounds < max_rounds and current.summary.nodes_after < current.summary.nodes_before:
        document = apply_plan(document, current, now)
        now += timedelta(minutes=15)
        following = _plan(snapshot_from_json(json.dumps(document)), pools, now, options)
        if following.summary.nodes_after == following.summary.nodes_before:
            break
        current = following
        rounds += 1
        moved += current.summary.pods_moved
    final = snapshot_from_json(json.dumps(apply_plan(document, current, now)))
    return Rounds(
        first=first,
        nodes_after=current.summary.nodes_after,
        rounds=rounds,
        pods_moved=moved,
        cost_after=current.summary.cost_per_hour_after,
        cpu_pods_on_gpu_nodes=cpu_pods_on_gpu(final),
    )


def apply_plan(document: dict[str, Any], result: Plan, now: datetime) -> dict[str, Any]:
    """The cluster after the plan ran: removed nodes (and their DaemonSet pods) gone, evicted pods
    running on the node the plan named, started now."""
    removed = {a.node for a in result.actions if a.type == "removeNode"}
    moves = {a.pod: a.to_node for a in result.actions if a.type == "evict"}
    if any(a.type == "replaceNode" for a in result.actions):
        raise SystemExit("benchmark pools define no replacement types")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    items = []
    for item in document["items"]:
        if item["kind"] == "Node" and item["metadata"]["name"] in removed:
            continue
        if item["kind"] == "Pod":
            key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
            if key in moves:
                status = {**item["status"], "startTime": stamp}
                items.append({**item, "spec": {**item["spec"], "nodeName": moves[key]}, "status": status})
                continue
            if item["spec"].get("nodeName") in removed:
                continue
        items.append(item)
    return {**document, "items": items}


def cpu_pods_on_gpu(snapshot: Snapshot) -> int:
    gpu_nodes = {n.name for n in snapshot.nodes if n.gpus() > 0}
    return sum(
        1
        for p in snapshot.pods
        if p.node_name in gpu_nodes and p.gpus() <= 0 and not (p.is_daemon or p.is_mirror)
    )


def measure(size: int, seed: int, max_rounds: int) -> Row:
    generated = generate(size, seed)
    pools = generated.policies()
    now = datetime.fromisoformat(generated.now.replace("Z", "+00:00"))
    text = json.dumps(generated.snapshot)
    options = PlannerOptions()

    gc.collect()
    started = time.perf_counter()
    snapshot = snapshot_from_json(text)
    parsed = time.perf_counter()
    first = _plan(snapshot, pools, now, options)
    planned = time.perf_counter()

    gc.collect()
    tracemalloc.start()
    _plan(snapshot_from_json(text), pools, now, options)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    placement = split(snapshot)
    assignment = assignment_for(snapshot, pools)
    return Row(
        size=size,
        pods=len(snapshot.pods),
        parse_s=parsed - started,
        plan_s=planned - parsed,
        peak_mib=peak / 2**20,
        bound=lower_bound(placement, assignment, cpu_pods_on_gpu_nodes=False).total,
        bound_any=lower_bound(placement, assignment, cpu_pods_on_gpu_nodes=True).total,
        default=converge(
            generated.snapshot, pools=pools, now=now, options=options, max_rounds=max_rounds, first=first
        ),
        relaxed=converge(
            generated.snapshot,
            pools=pools,
            now=now,
            options=PlannerOptions(cpu_pods_on_gpu_nodes=True),
            max_rounds=max_rounds,
        ),
        ffd=first_fit_decreasing(placement),
        replay=most_allocated_replay(placement),
    )


HEADER = (
    "nodes",
    "pods",
    "parse s",
    "plan s",
    "peak MiB",
    "LB (rule) / LB (any)",
    "round 1: nodes after (/LB rule)",
    "converged: nodes after (/LB rule), rounds",
    "cpu-pods-on-gpu-nodes: converged (/LB any), rounds",
    "FFD repack (/LB rule)",
    "MostAllocated replay (/LB any)",
    "pods moved: round 1 / all rounds / FFD / replay",
    "$/h before → after (converged)",
)


def _ratio(value: int, bound: int) -> str:
    return f"{value:,} ({value / bound:.3f})"


def report(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---:|" * len(HEADER)]
    for r in rows:
        d, x = r.default, r.relaxed
        cells = (
            f"{r.size:,}",
            f"{r.pods:,}",
            f"{r.parse_s:.2f}",
            f"{r.plan_s:.2f}",
            f"{r.peak_mib:.0f}",
            f"{r.bound:,} / {r.bound_any:,}",
            _ratio(d.first.summary.nodes_after, r.bound),
            f"{_ratio(d.nodes_after, r.bound)}, {d.rounds}",
            f"{_ratio(x.nodes_after, r.bound_any)}, {x.rounds}",
            _ratio(r.ffd.nodes_used, r.bound),
            _ratio(r.replay.nodes_used, r.bound_any),
            f"{d.first.summary.pods_moved:,} / {d.pods_moved:,} / "
            f"{r.ffd.pods_moved:,} / {r.replay.pods_moved:,}",
            f"{d.first.summary.cost_per_hour_before:,.0f} → {d.cost_after:,.0f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        total = r.parse_s + r.plan_s
        ratio = r.default.nodes_after / r.bound
        line = f"{r.size:>5} nodes: converged/LB {ratio:.3f} ({'OK' if ratio <= TARGET_RATIO else 'ABOVE'}"
        line += f", target <= {TARGET_RATIO}); parse+plan {total:.2f}s"
        if r.size >= 5000:
            line += (
                f" ({'OK' if total < TARGET_SECONDS_5000 else 'SLOW'}, target < {TARGET_SECONDS_5000:.0f}s)"
            )
        memory = "OK" if r.peak_mib < TARGET_PEAK_MIB else "HIGH"
        line += f"; peak {r.peak_mib:.0f} MiB ({memory}, target < 1 GiB)"
        line += f"; CPU pods on GPU nodes at the end: {r.default.cpu_pods_on_gpu_nodes}"
        line += f" (replay-style option: {r.relaxed.cpu_pods_on_gpu_nodes})"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the consolidation planner.")
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated node counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rounds", type=int, default=10)
    args = parser.parse_args(argv)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.seed, args.max_rounds)
        rows.append(row)
        print(f"measured {size} nodes", file=sys.stderr)
    print(report(rows))
    print()
    print("\n".join(verdicts(rows)))
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
