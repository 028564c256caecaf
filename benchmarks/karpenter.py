"""Consolidation side by side with the real Karpenter, on the same fragmented GPU fleets.

    make bench-karpenter                                      # two fleets of about 64 GPU nodes
    .venv/bin/python -m benchmarks.karpenter --scale 0.25 --quiet 180  # a quick run

It starts (or reuses) the cluster `rightsizer-bench-karpenter` with the real Karpenter (its kwok cloud
provider; API server 46443, Prometheus 49090, fake DCGM exporter 49400). For each fleet of
benchmarks/karpenter_fleet.py it builds the fleet twice from scratch, the same way (Karpenter
launches every node; the real scheduler places every pod), and consolidates it:

(a) Karpenter alone: NodePools `WhenEmptyOrUnderutilized`, `consolidateAfter: 0s`, budgets 100%;
(b) GPU Rightsizer in Enforce (GPUWorkloads on the inference, training and idle workloads,
    GPUNodePools on the NodePools, run as the Helm chart's ServiceAccount), Karpenter `WhenEmpty`.
    Training workers are never moved unless --training-movable (the runs checkpoint).
(both, with --modes): (b) with Karpenter's `WhenEmptyOrUnderutilized` kept: what happens when both
    consolidate.

Each run ends when the fleet's node count has not changed for --quiet seconds (or --time-limit). It
reports GPU nodes and cost per hour, pods evicted (the Eviction API's DisruptionTarget condition),
evictions per node removed, protected (do-not-disrupt) and training pods evicted, Pending pods at
the end and time to converge; for (b) also the planner's predicted node count. Ratios are (b)/(a).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `rightsizer` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from benchmarks import karpenter_fleet as kf
from benchmarks.live_cluster import (
    ROOT,
    Admin,
    BenchError,
    LocalCluster,
    OperatorRun,
    free_port,
    log,
    wait_for,
)
from rightsizer.devcluster.identity import service_account_kubeconfig
from rightsizer.devcluster.karpenter_fleet import SHAPES

CLUSTER_ENV = {
    "RIGHTSIZER_CLUSTER_NAME": "rightsizer-bench-karpenter",
    "RIGHTSIZER_APISERVER_PORT": "46443",
    "RIGHTSIZER_PROMETHEUS_PORT": "49090",
    "RIGHTSIZER_DCGM_PORT": "49400",
    "RIGHTSIZER_OPERATOR_METRICS_PORT": "48080",
    "RIGHTSIZER_KARPENTER_PORT": "48081",
}
CHART_RELEASE, CHART_NAMESPACE = "gpu-rightsizer", "rightsizer-bench"
PRICES = {s.shape.instance_type: s.on_demand for s in SHAPES}


@dataclass
class Outcome:
    fleet: str
    mode: str
    nodes_before: int
    nodes_after: int
    cost_before: float
    cost_after: float
    evicted: int
    protected_evicted: int
    training_evicted: int
    pending: int
    converge_seconds: float
    predicted_nodes: int | None = None

    @property
    def evictions_per_node(self) -> float:
        removed = self.nodes_before - self.nodes_after
        return self.evicted / removed if removed > 0 else float(self.evicted)


@dataclass
class Evictions:
    """Pods of the benchmark namespace the Eviction API took (DisruptionTarget), by role."""

    roles: dict[str, str] = field(default_factory=dict)  # pod uid -> role
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def watching(self, core: client.CoreV1Api) -> Iterator[Evictions]:
        thread = threading.Thread(target=self._loop, args=(core,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)

    def _loop(self, core: client.CoreV1Api) -> None:
        while not self._stop.is_set():
            with suppress(Exception):  # a broken watch is watched again
                for event in watch.Watch().stream(core.list_namespaced_pod, kf.NAMESPACE, timeout_seconds=5):
                    pod = event["object"]
                    for c in pod.status.conditions or []:
                        if c.type == "DisruptionTarget" and c.reason == "EvictionByEvictionAPI":
                            self.roles[pod.metadata.uid] = (pod.metadata.labels or {}).get(kf.ROLE, "")

    def count(self, *roles: str) -> int:
        return sum(1 for r in self.roles.values() if not roles or r in roles)


def bench_nodes(core: client.CoreV1Api, fleet: kf.Fleet) -> list[client.V1Node]:
    names = ",".join(p.name for p in fleet.pools)
    return list(core.list_node(label_selector=f"{kf.POOL_LABEL} in ({names})").items)


def cost(nodes: Sequence[client.V1Node]) -> float:
    return sum(
        PRICES.get((n.metadata.labels or {}).get("node.kubernetes.io/instance-type", ""), 0.0) for n in nodes
    )


def pods(core: client.CoreV1Api, phase: str | None = None) -> list[client.V1Pod]:
    listed = core.list_namespaced_pod(kf.NAMESPACE).items
    return [
        p for p in listed if not p.metadata.deletion_timestamp and (phase is None or p.status.phase == phase)
    ]


def reset(cluster: LocalCluster, core: client.CoreV1Api, fleet: kf.Fleet) -> None:
    """No benchmark namespace, GPUNodePools, NodePools, NodeClaims or nodes left from a previous run."""
    kubectl = [cluster.tool("kubectl"), "--kubeconfig", cluster.kubeconfig]
    pools = [p.name for p in fleet.pools]
    # A run stopped before its operator removed its finalizers would keep these from going.
    listed = subprocess.run(
        [*kubectl, "get", "gpuworkloads", "-n", kf.NAMESPACE, "-o", "name"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.split() + [f"gpunodepool/{p}" for p in pools]  # fmt: skip
    for name in listed:
        subprocess.run(
            [*kubectl, "patch", "-n", kf.NAMESPACE, name, "--type", "merge",
             "-p", '{"metadata":{"finalizers":null}}'],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip
    for cmd in (
        ["delete", "namespace", kf.NAMESPACE, "--ignore-not-found", "--timeout=300s"],
        ["delete", "gpunodepools", *pools, "--ignore-not-found"],
        ["delete", "nodepools.karpenter.sh", *pools, "--ignore-not-found"],
        ["delete", "nodeclaims.karpenter.sh", "-l", f"{kf.POOL_LABEL} in ({','.join(pools)})"],
    ):
        subprocess.run([*kubectl, *cmd], capture_output=True, check=False, timeout=600)

    def clean() -> tuple[bool, str]:
        left = bench_nodes(core, fleet)
        return not left, f"{len(left)} nodes of the last run still terminating"

    wait_for("the previous fleet to be gone", clean, timeout=600)


def build(admin: Admin, core: client.CoreV1Api, fleet: kf.Fleet) -> None:
    """The fragmented fleet, Karpenter not consolidating yet (consolidateAfter: Never)."""
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kf.NAMESPACE}})
    wait_for("the namespace's ServiceAccount", lambda: (_has_sa(core), "waiting"), timeout=120, every=1)
    for pool in kf.node_pools(fleet, karpenter_consolidates=False):
        pool["spec"]["disruption"]["consolidateAfter"] = "Never"
        admin.apply(pool)
    admin.apply(kf.utilisation_rules())
    admin.apply_all(kf.fillers(fleet))

    def filled() -> tuple[bool, str]:
        running = len(pods(core, "Running"))
        return running == fleet.gpu_nodes, f"{running}/{fleet.gpu_nodes} filler pods Running"

    wait_for("Karpenter to launch one node per filler pod", filled, timeout=900)
    rest = kf.workloads(fleet)
    admin.apply_all(rest)
    expected = fleet.gpu_nodes + _pod_count(rest)

    def placed() -> tuple[bool, str]:
        running = len(pods(core, "Running"))
        return running == expected, f"{running}/{expected} pods Running"

    wait_for("every pod placed", placed, timeout=900)
    for filler in kf.fillers(fleet):
        admin.delete(f"/apis/apps/v1/namespaces/{kf.NAMESPACE}/deployments/{filler['metadata']['name']}")

    def finished() -> tuple[bool, str]:
        left = [p for p in pods(core) if (p.metadata.labels or {}).get(kf.ROLE) == "filler"]
        return not left, f"{len(left)} filler pods left"

    wait_for("the filler work to finish", finished, timeout=300)


def _has_sa(core: client.CoreV1Api) -> bool:
    with suppress(Exception):
        core.read_namespaced_service_account("default", kf.NAMESPACE)
        return True
    return False


def _pod_count(objects: Sequence[dict[str, Any]]) -> int:
    total = 0
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            total += obj["spec"]["replicas"]
    return total


def converge(core: client.CoreV1Api, fleet: kf.Fleet, quiet: float, limit: float) -> float:
    """Seconds until the node count last changed, once it has held still for `quiet` seconds."""
    started = time.monotonic()
    last_count, last_change = len(bench_nodes(core, fleet)), started
    while True:
        time.sleep(5)
        now = time.monotonic()
        count = len(bench_nodes(core, fleet))
        if count != last_count:
            log(f"  {count} GPU nodes")
            last_count, last_change = count, now
        if now - last_change >= quiet or now - started >= limit:
            return last_change - started


def predicted_nodes(cluster: LocalCluster, fleet: kf.Fleet, core: client.CoreV1Api) -> int:
    """The planner's GPU node count after its plan, for the benchmark's pools only."""
    out = subprocess.run(
        [sys.executable, "-m", "rightsizer.cli.main", "plan", "--live", "--output", "json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"KUBECONFIG": cluster.kubeconfig, "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    summary = json.loads(out)["summary"]
    others = int(summary["gpuNodesBefore"]) - len(bench_nodes(core, fleet))
    return int(summary["gpuNodesAfter"]) - others


def run_once(
    cluster: LocalCluster, fleet: kf.Fleet, mode: str, args: argparse.Namespace, identity: str
) -> Outcome:
    admin = Admin(cluster.kubeconfig, workers=8)
    core = client.CoreV1Api(admin.api)
    log(f"{fleet.name}, {mode}: building the fleet")
    reset(cluster, core, fleet)
    build(admin, core, fleet)
    before = bench_nodes(core, fleet)
    log(f"{fleet.name}, {mode}: {len(before)} GPU nodes, {cost(before):.2f}/h; consolidating")
    predicted = None
    operator: OperatorRun | None = None
    pool_names = [p.name for p in fleet.pools]
    with Evictions().watching(core) as evictions:
        for pool in kf.node_pools(fleet, karpenter_consolidates=mode in ("karpenter", "both")):
            admin.apply(pool)
        if mode in ("rightsizer", "both"):
            workloads = kf.gpu_workloads(fleet, training_movable=args.training_movable)
            for obj in (*kf.gpu_node_pools(fleet), *workloads):
                admin.apply(obj)
            predicted = predicted_nodes(cluster, fleet, core)
            port = free_port()
            operator = OperatorRun(
                ["--kubeconfig", identity, "--standalone", "--prometheus-url", cluster.prometheus_url,
                 "--interval", "15", "--consolidation-interval", "5", "--drain-timeout", "180",
                 "--metrics-address", "127.0.0.1", "--metrics-port", str(port),
                 "--health-port", str(free_port())],
                Path(args.workdir) / f"operator-{fleet.name}.log", port,
            )  # fmt: skip
        try:
            seconds = converge(core, fleet, args.quiet, args.time_limit)
        finally:
            if operator is not None:
                # Deleted while the operator runs, as a user would: it removes its finalizers.
                kubectl = [cluster.tool("kubectl"), "--kubeconfig", cluster.kubeconfig, "delete"]
                for what in (["gpuworkloads", "--all", "-n", kf.NAMESPACE], ["gpunodepools", *pool_names]):
                    subprocess.run(
                        [*kubectl, *what, "--timeout=120s"], capture_output=True, check=False, timeout=180
                    )
                operator.stop()
    after = bench_nodes(core, fleet)
    return Outcome(
        fleet.name, mode, len(before), len(after), cost(before), cost(after),
        evictions.count(), evictions.count("guarded"), evictions.count("training"),
        len(pods(core, "Pending")), seconds, predicted,
    )  # fmt: skip


def install_chart(cluster: LocalCluster, workdir: Path) -> str:
    """The chart with its Karpenter provider on; the operator runs as its ServiceAccount."""
    subprocess.run(
        [cluster.tool("helm"), "upgrade", "--install", CHART_RELEASE, str(ROOT / "helm" / "gpu-rightsizer"),
         "--namespace", CHART_NAMESPACE, "--create-namespace", "--kubeconfig", cluster.kubeconfig,
         "--set", "replicas=1", "--set", "peering.enabled=false", "--set", "providers.karpenter=true",
         "--set", f"prometheus.url={cluster.prometheus_url}", "--wait=false"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return service_account_kubeconfig(
        cluster.tool("kubectl"), cluster.kubeconfig, CHART_NAMESPACE, CHART_RELEASE,
        path=workdir / "operator.kubeconfig", duration="6h",
    )  # fmt: skip


def report(outcomes: Sequence[Outcome]) -> str:
    head = (
        "| fleet | run | GPU nodes | $/h | evicted | evictions/node removed | protected evicted "
        "| training evicted | Pending | converged (s) | predicted nodes |"
    )
    lines = [head, "|" + "---|" * 11]
    for o in outcomes:
        lines.append(
            f"| {o.fleet} | {o.mode} | {o.nodes_before} → {o.nodes_after} "
            f"| {o.cost_before:.2f} → {o.cost_after:.2f} | {o.evicted} | {o.evictions_per_node:.2f} "
            f"| {o.protected_evicted} | {o.training_evicted} | {o.pending} | {o.converge_seconds:.0f} "
            f"| {'' if o.predicted_nodes is None else o.predicted_nodes} |"
        )
    lines.append("")
    for fleet in dict.fromkeys(o.fleet for o in outcomes):
        a = next((o for o in outcomes if o.fleet == fleet and o.mode == "karpenter"), None)
        for b in (o for o in outcomes if o.fleet == fleet and o.mode != "karpenter"):
            if a is None:
                continue
            ratio = b.cost_after / a.cost_after if a.cost_after else float("nan")
            per_node = b.evictions_per_node / a.evictions_per_node if a.evictions_per_node else float("nan")
            lines.append(
                f"{fleet}: {b.mode}/karpenter: cost {ratio:.3f}; evictions per node removed {per_node:.2f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="fleet size (1: about 64 GPU nodes each)")
    parser.add_argument(
        "--quiet", type=float, default=300, help="seconds without a node change that end a run"
    )
    parser.add_argument("--time-limit", type=float, default=1800, help="longest a run may consolidate")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--modes",
        default="karpenter,rightsizer",
        help="runs per fleet, in order: karpenter (a), rightsizer (b), both (b with Karpenter's "
        "WhenEmptyOrUnderutilized kept)",
    )
    parser.add_argument(
        "--training-movable",
        action="store_true",
        help="(b): training GPUWorkloads allow consolidation (the runs checkpoint), as Karpenter assumes",
    )
    args = parser.parse_args(argv)
    if not set(args.modes.split(",")) <= {"karpenter", "rightsizer", "both"}:
        parser.error(f"--modes: {args.modes!r}: use karpenter, rightsizer and both")
    cluster = LocalCluster(dict(CLUSTER_ENV))
    with tempfile.TemporaryDirectory(prefix="bench-karpenter-") as workdir:
        args.workdir = workdir
        try:
            cluster.up({"RIGHTSIZER_KARPENTER": "1"})
            kubectl = [cluster.tool("kubectl"), "--kubeconfig", cluster.kubeconfig]
            subprocess.run(
                [*kubectl, "apply", "-f", str(ROOT / "crds")], capture_output=True, check=True, timeout=120
            )
            identity = install_chart(cluster, Path(workdir))
            outcomes = [
                run_once(cluster, fleet, mode, args, identity)
                for fleet in kf.fleets(args.scale)
                for mode in args.modes.split(",")
            ]
        except (BenchError, subprocess.CalledProcessError) as exc:
            print(f"bench-karpenter: {exc}", file=sys.stderr)
            return 1
        finally:
            if cluster.started and not args.keep_cluster:
                cluster.down()
    print(report(outcomes))
    training = "movable (--training-movable)" if args.training_movable else "never moved"
    print(f"(b): training workers {training}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
