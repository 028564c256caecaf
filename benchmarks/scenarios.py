"""Planner benchmark on fleets shaped like real GPU clusters (benchmarks/real_fleet.py).

Per scenario, in one process: the resource bound and the class bound (HiGHS), greedy single-node
consolidation, first-fit-decreasing repack (largest nodes first) and the planner: one plan, and
plans repeated until one removes nothing (budgets 100%, pods may change GPU model), with
parse + plan wall clock and peak memory (tracemalloc) of one plan.

``python -m benchmarks.scenarios --nodes 1200`` (also run by ``python -m benchmarks.run``).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import datetime

from benchmarks.baselines import RepackResult, first_fit_decreasing, split
from benchmarks.bounds import ClassBound, class_bound, resource_bound
from benchmarks.greedy import GreedyResult, greedy_single_node
from benchmarks.real_fleet import SCENARIOS, generate_real
from benchmarks.run import Rounds, converge
from rightsizer.core.planner import PlanInput, PlannerOptions, plan
from rightsizer.core.snapshot_parsing import snapshot_from_json

OPTIONS = PlannerOptions(keep_gpu_model=False)


@dataclass(frozen=True)
class ScenarioRow:
    scenario: str
    nodes: int
    pods: int
    seconds: float  # parse + one plan
    peak_mib: float
    resource: int
    classes: ClassBound
    greedy: GreedyResult
    ffd: RepackResult
    planner: Rounds


def measure_scenario(scenario: str, nodes: int, seed: int, max_rounds: int) -> ScenarioRow:
    generated = generate_real(nodes, seed, scenario)
    pools = generated.policies()
    now = datetime.fromisoformat(generated.now.replace("Z", "+00:00"))
    text = json.dumps(generated.snapshot)
    gc.collect()
    started = time.perf_counter()
    snapshot = snapshot_from_json(text)
    first = plan(PlanInput(snapshot=snapshot, now=now, pools=pools, options=OPTIONS))
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    plan(PlanInput(snapshot=snapshot_from_json(text), now=now, pools=pools, options=OPTIONS))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    placement = split(snapshot)
    return ScenarioRow(
        scenario=scenario,
        nodes=len(snapshot.nodes),
        pods=sum(1 for p in snapshot.pods if not (p.is_daemon or p.is_mirror)),
        seconds=seconds,
        peak_mib=peak / 2**20,
        resource=resource_bound(placement),
        classes=class_bound(placement, keep_gpu_model=False),
        greedy=greedy_single_node(placement, keep_gpu_model=False),
        ffd=first_fit_decreasing(placement, keep_gpu_model=False, largest_first=True),
        planner=converge(
            generated.snapshot, pools=pools, now=now, options=OPTIONS, max_rounds=max_rounds, first=first
        ),
    )


HEADER = (
    "scenario",
    "nodes / pods",
    "LB resource / LB classes",
    "one plan: nodes (/LB classes)",
    "converged: nodes (/LB resource, /LB classes), rounds",
    "greedy single-node (/LB classes)",
    "FFD repack (/LB classes), unplaced",
    "converged vs greedy / vs FFD",
    "pods moved: one plan / converged / greedy / FFD",
    "one plan's share of the converged saving",
    "parse + plan s, peak MiB",
)


def report(rows: list[ScenarioRow]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---:|" * len(HEADER)]
    for r in rows:
        lb = r.classes.nodes
        one = r.planner.first.summary.nodes_after
        done = r.planner.nodes_after
        share = (r.nodes - one) / (r.nodes - done) if done < r.nodes else 1.0
        cells = (
            r.scenario,
            f"{r.nodes:,} / {r.pods:,}",
            f"{r.resource:,} / {lb:,}" + ("" if r.classes.optimal else " (dual bound)"),
            f"{one:,} ({one / lb:.3f})",
            f"{done:,} ({done / r.resource:.3f}, {done / lb:.3f}), {r.planner.rounds}",
            f"{r.greedy.nodes_used:,} ({r.greedy.nodes_used / lb:.3f})",
            f"{r.ffd.nodes_used:,} ({r.ffd.nodes_used / lb:.3f}), {r.ffd.unplaced}",
            f"{done / r.greedy.nodes_used - 1:+.1%} / {done / r.ffd.nodes_used - 1:+.1%}",
            f"{r.planner.first.summary.pods_moved:,} / {r.planner.pods_moved:,} / "
            f"{r.greedy.pods_moved:,} / {r.ffd.pods_moved:,}",
            f"{share:.0%}",
            f"{r.seconds:.2f}, {r.peak_mib:.0f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Planner benchmark on real-shaped GPU fleets.")
    parser.add_argument("--nodes", default="1200", help="comma-separated node counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rounds", type=int, default=10)
    args = parser.parse_args(argv)
    rows = []
    for size in (int(s) for s in args.nodes.split(",")):
        for scenario in SCENARIOS:
            rows.append(measure_scenario(scenario, size, args.seed, args.max_rounds))
            print(f"measured {scenario} at {size} nodes", file=sys.stderr)
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
