"""Reconcile-loop benchmark: one full pass over N GPUWorkloads (default 1,000 over 5,000 pods on 500
nodes), in memory, so what is measured is the operator's own work per decision, not I/O.

Prints per-workload decision time (p50/p99), the whole pass, metrics queries per pass and peak
memory, next to a baseline run in the same process that asks the metrics source once per workload.

    .venv/bin/python -m benchmarks.reconcile [--workloads 1000] [--pods-per-workload 5] [--passes 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import timedelta

from rightsizer.devcluster.memory_cluster import MemoryCluster


class PerWorkloadQueries:
    """Baseline: no sharing between workloads of a pass (what a naive loop does)."""

    def __init__(self, ttl: timedelta) -> None:
        self.ttl = ttl

    def get(self, source, signal, window, now):  # type: ignore[no-untyped-def]  # mirrors FleetCache.get
        return source.fleet_samples(signal, window, "avg")


def build(workloads: int, pods_per_workload: int) -> MemoryCluster:
    cluster = MemoryCluster(interval=30)
    for i in range(workloads):
        ns = f"team-{i % 50}"
        util = (i * 37) % 100
        cluster.deployment(ns, f"svc-{i}", pods_per_workload, util=util)
        cluster.workload(ns, f"svc-{i}", maxReplicas=pods_per_workload * 3)
    return cluster


def one_pass(cluster: MemoryCluster) -> tuple[list[float], float, int]:
    before = len(cluster.metrics.queries)
    times: list[float] = []
    start = time.perf_counter()
    for ns, name in list(cluster.objects):
        t = time.perf_counter()
        cluster.reconcile(ns, name)
        times.append(time.perf_counter() - t)
    return times, time.perf_counter() - start, len(cluster.metrics.queries) - before


def run(workloads: int, pods_per_workload: int, passes: int, baseline: bool) -> dict[str, float]:
    cluster = build(workloads, pods_per_workload)
    if baseline:
        cluster.reconciler._fleet = PerWorkloadQueries(timedelta(0))  # type: ignore[assignment]
    tracemalloc.start()
    all_times: list[float] = []
    totals: list[float] = []
    queries: list[int] = []
    for _ in range(passes):
        cluster.now += timedelta(seconds=30)
        for (ns, name), _obj in cluster.objects.items():  # fresh samples for the pass
            for pod in cluster.pods[ns]:
                if pod.labels.get("app") == name:
                    cluster.metrics.record(ns, pod.name, 50.0, at=cluster.now)
        times, total, q = one_pass(cluster)
        all_times += times
        totals.append(total)
        queries.append(q)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ordered = sorted(all_times)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "pass_s": statistics.median(totals),
        "queries": statistics.median(queries),
        "peak_mib": peak / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--pods-per-workload", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--baseline-workloads", type=int, default=100)
    args = parser.parse_args(argv)
    print(
        f"{args.workloads} GPUWorkloads, {args.workloads * args.pods_per_workload} pods, {args.passes} passes"
    )
    ours = run(args.workloads, args.pods_per_workload, args.passes, baseline=False)
    # The baseline re-reads the whole fleet for every workload (quadratic), so it runs on at most
    # --baseline-workloads; per-decision figures compare directly, queries per pass scale with N.
    base_n = min(args.workloads, args.baseline_workloads)
    base = run(base_n, args.pods_per_workload, 1, baseline=True)
    base["queries"] *= args.workloads / base_n
    base["pass_s"] *= args.workloads / base_n
    print(f"baseline: one metrics query per workload, measured on {base_n}, scaled to {args.workloads}")
    print(f"{'':22}{'rightsizer':>12}{'baseline':>12}{'ratio':>8}")
    for key, label in [
        ("p50_ms", "decision p50 (ms)"),
        ("p99_ms", "decision p99 (ms)"),
        ("pass_s", "full pass (s)"),
        ("queries", "metrics queries/pass"),
    ]:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"{label:22}{ours[key]:12.2f}{base[key]:12.2f}{ratio:8.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'traced peak (MiB)':22}{ours['peak_mib']:12.2f}   (the loop's own allocations)")
    print(f"{'process max RSS (MiB)':22}{rss:12.2f}   (interpreter, libraries and both runs; target < 500)")
    targets = rss < 500 and ours["p99_ms"] < 50 and ours["pass_s"] < 30 and ours["queries"] <= 2
    print(
        "targets (p99 < 50 ms, pass < 30 s, queries independent of workloads):",
        "met" if targets else "NOT met",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
