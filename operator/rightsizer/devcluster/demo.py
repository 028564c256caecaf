"""The demo: a realistic mixed GPU fleet on the local cluster, managed live by the operator.

Inference services with a diurnal load, training jobs of which one has gone idle, a CPU-only pod on a
GPU node. The operator runs as a real process; the demo prints replicas, nodes and cost as they change,
then `rightsizer report` against the baseline taken at the start, and writes an HTML chart of GPU
utilisation and cost over time. Run by `make demo` (hack/demo.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from rightsizer.cli.charts import svg_chart
from rightsizer.devcluster.identity import service_account_kubeconfig

NAMESPACE = "gpu-demo"
SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"
A100, L4 = "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"
ROOT = Path(__file__).resolve().parents[3]


def deployment(name: str, replicas: int, gpus: int, product: str | None, kind: str) -> dict[str, Any]:
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": "2", "memory": "8Gi"}}
    if gpus:
        # Extended resources cannot be overcommitted: the API server wants the limit too.
        resources["requests"]["nvidia.com/gpu"] = resources.setdefault("limits", {})["nvidia.com/gpu"] = str(
            gpus
        )
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": resources}
    spec: dict[str, Any] = {"containers": [container]}
    if product:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    labels = {"app": name, "rightsizer.io/workload-type": kind}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def workload(name: str, kind: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "workloadType": kind,
        "mode": "Enforce",
        "metric": {"window": "20s"},
    }
    if kind == "Inference":
        body.update(
            targetUtilization=60,
            minReplicas=1,
            maxReplicas=8,
            behavior={"scaleDown": {"stabilizationWindowSeconds": 30}},
        )
    body.update(spec)
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": body,
    }


def pool(name: str, product: str, gpus: int, price: float, watts: int) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"rightsizer.io/pool": name},
            "provider": {"type": "kwok"},
            "gpuModel": product,
            "gpusPerNode": gpus,
            "pricePerGpuHour": price,
            "wattsPerGpu": watts,
            "pue": 1.3,
            "energyPricePerKwh": 0.12,
            "minNodes": 1,
            "consolidationPolicy": "WhenUnderutilized",
            "consolidateAfter": "30s",
            # The demo's pods are minutes old when consolidation starts, and an emptied node should go
            # while you watch; real pools keep 10m for both.
            "startupGracePeriod": "1m",
            "scaleDownAfter": "1m",
            "disruption": {"budgets": [{"nodes": "1"}]},
        },
    }


def fleet() -> list[dict[str, Any]]:
    return [
        deployment("chat-llm", 4, 1, A100, "Inference"),
        deployment("embeddings", 6, 1, L4, "Inference"),
        deployment("pretrain-7b", 1, 4, A100, "Training"),
        deployment("finetune-idle", 2, 2, A100, "Training"),
        deployment("batch-report", 1, 0, None, "Inference"),
    ]


def workloads() -> list[dict[str, Any]]:
    idle = {"thresholdPercent": 5, "idleFor": "40s", "action": "Suspend"}
    return [
        workload("chat-llm", "Inference"),
        workload("embeddings", "Inference"),
        workload("pretrain-7b", "Training", idlePolicy=idle),
        workload("finetune-idle", "Training", idlePolicy=idle),
    ]


def scenario() -> dict[str, Any]:
    # A compressed day: chat load climbs to a peak and falls back every 4 minutes; embeddings run
    # far below their target; pre-training is busy; the fine-tune finished but still holds its GPUs.
    day = [[0, 35], [40, 70], [80, 95], [120, 60], [160, 25], [200, 15]]
    return {
        "rules": [
            {"selector": {"app": "chat-llm"}, "series": day, "memoryUsedMiB": 38000},
            {"selector": {"app": "embeddings"}, "util": 12, "memoryUsedMiB": 3000},
            {"selector": {"app": "pretrain-7b"}, "util": 96, "memoryUsedMiB": 70000},
            {"selector": {"app": "finetune-idle"}, "util": 0, "memoryUsedMiB": 1200},
        ]
    }


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"[demo] kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply(docs: list[dict[str, Any]]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def rightsizer(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "rightsizer.cli.main", *args], capture_output=True, text=True, check=True
    ).stdout


def prom_range(url: str, query: str, start: float, end: float) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": query, "start": start, "end": end, "step": 5}
    rsp = requests.get(f"{url}/api/v1/query_range", params=params, timeout=10)
    result: list[dict[str, Any]] = rsp.json().get("data", {}).get("result", [])
    return result


def write_chart(path: Path, prom: str, start: float, end: float) -> None:
    util = prom_range(prom, f'rightsizer_workload_gpu_utilization{{namespace="{NAMESPACE}"}}', start, end)
    cost = prom_range(prom, f'rightsizer_workload_cost_per_hour{{namespace="{NAMESPACE}"}}', start, end)
    nodes = prom_range(prom, "count by (Hostname) (DCGM_FI_DEV_GPU_UTIL) * 0 + 1", start, end)
    gpus = prom_range(prom, f'count(DCGM_FI_DEV_GPU_UTIL{{namespace="{NAMESPACE}"}})', start, end)
    for s in gpus:
        s["metric"]["series"] = "GPUs allocated to the demo"
    body = (
        svg_chart("GPU utilisation per workload (%)", util, "workload", "%")
        + svg_chart("Cost per hour per workload", cost, "workload", "/h")
        + svg_chart("GPUs allocated to the demo", gpus, "series", "")
        + f"<p>GPU nodes reporting at the end: {len({s['metric'].get('Hostname') for s in nodes})}</p>"
    )
    head = "<!doctype html><meta charset='utf-8'><title>GPU Rightsizer demo</title>"
    path.write_text(f"{head}<body style='font-family:sans-serif'><h1>GPU Rightsizer demo</h1>{body}</body>")


def install_chart(admin_kubeconfig: str, prometheus_url: str) -> str:
    """`helm install` the chart as a user would; kwok runs no containers, so the demo runs the operator
    locally with a token of the chart's ServiceAccount: it can do exactly what the chart grants."""
    chart = ROOT / "helm" / "gpu-rightsizer"
    print("[demo] helm upgrade --install gpu-rightsizer (least-privilege RBAC, kwok provider)")
    subprocess.run(
        ["helm", "upgrade", "--install", "gpu-rightsizer", str(chart), "--namespace", "gpu-rightsizer",
         "--create-namespace", "--kubeconfig", admin_kubeconfig, "--set", "replicas=1",
         "--set", "peering.enabled=false", "--set", "providers.kwok=true",
         "--set", f"prometheus.url={prometheus_url}"],
        capture_output=True, text=True, check=True, timeout=180,
    )  # fmt: skip
    path = Path(tempfile.gettempdir()) / "rightsizer-demo-operator.kubeconfig"
    return service_account_kubeconfig(
        "kubectl", admin_kubeconfig, "gpu-rightsizer", "gpu-rightsizer", path=path, duration="2h"
    )


def wait_for_statuses(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl("get", "gw", "-n", NAMESPACE, "-o", "json")
        items = json.loads(out)["items"]
        if items and all((i.get("status") or {}).get("cost") for i in items):
            return
        time.sleep(2)


def nodes_line() -> str:
    names = kubectl("get", "nodes", "-L", "rightsizer.io/pool", "--no-headers", check=False)
    return f"{names.count(chr(10))} nodes\n"


def settled_view() -> str:
    """What counts as a change: each workload's current and desired replicas, and the node count; not
    its utilisation, cost or age, which move all the time."""
    replicas = "{.metadata.name} {.status.replicas.current} {.status.replicas.desired}"
    path = "{range .items[*]}" + replicas + '{"\\n"}{end}'
    return kubectl("get", "gw", "-n", NAMESPACE, "-o", f"jsonpath={path}") + nodes_line()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=int, default=480, help="most seconds to let the operator work (480)"
    )
    parser.add_argument("--every", type=int, default=15, help="seconds between progress lines (15)")
    parser.add_argument(
        "--settle", type=int, default=4, help="stop once this many progress lines in a row show no change (4)"
    )
    parser.add_argument("--out", default="demo-output", help="folder for the report and chart")
    args = parser.parse_args(argv)
    prom = os.environ["RIGHTSIZER_PROMETHEUS_URL"]
    kubeconfig = os.environ["KUBECONFIG"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(f"[demo] creating the GPU fleet in namespace {NAMESPACE}: inference, training, a CPU pod")
    kubectl("apply", "-f", str(ROOT / "crds"))
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    scenario_cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "fake-dcgm-scenario",
            "namespace": NAMESPACE,
            "labels": {SCENARIO_LABEL: "true"},
        },
        "data": {"scenario.yaml": yaml.safe_dump(scenario())},
    }
    apply([ns, scenario_cm, *fleet()])
    apply([pool("a100", A100, 8, 3.0, 400), pool("l4", L4, 4, 0.8, 72)])
    print(kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide"))

    identity = install_chart(kubeconfig, prom)
    log = Path(tempfile.gettempdir()) / "rightsizer-demo-operator.log"
    print(f"[demo] starting the operator as the chart's ServiceAccount (log: {log})")
    with log.open("w") as log_file:
        operator = subprocess.Popen(
            [sys.executable, "-m", "rightsizer.cli.main", "run", "--kubeconfig", identity, "--standalone",
             "--interval", "5", "--prometheus-url", prom, "--metrics-address", "127.0.0.1",
             "--metrics-port", os.environ.get("RIGHTSIZER_OPERATOR_METRICS_PORT", "18080"),
             "--health-port", "18081", "--consolidation-interval", "10"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    start = time.time()
    try:
        # First in Recommend mode for one pass: the baseline is the cost of the fleet as deployed.
        apply([{**w, "spec": {**w["spec"], "mode": "Recommend"}} for w in workloads()])
        wait_for_statuses(90)
        baseline = out / "baseline.json"
        baseline.write_text(rightsizer("report", "--output", "json"))
        print("[demo] baseline taken; switching the workloads to Enforce\n")
        apply(workloads())
        deadline = time.monotonic() + args.duration
        last, unchanged = "", 0
        while time.monotonic() < deadline and unchanged < args.settle:
            time.sleep(args.every)
            if operator.poll() is not None:
                print(f"[demo] the operator stopped unexpectedly; see {log}")
                break
            elapsed = int(time.time() - start)
            print(f"--- {elapsed}s ---")
            print(kubectl("get", "gw", "-n", NAMESPACE) + nodes_line(), end="")
            now_view = settled_view()
            unchanged = unchanged + 1 if now_view == last else 0
            last = now_view
        if unchanged >= args.settle:
            print(f"[demo] settled: nothing changed in the last {args.settle * args.every}s")
        else:
            print(f"[demo] still changing after {args.duration}s; the report shows where it got to")
        report = rightsizer("report", "--baseline", str(baseline))
        (out / "report.txt").write_text(report)
        print("\n" + report)
        write_chart(out / "chart.html", prom, start, time.time())
        print(f"\n[demo] chart: {out / 'chart.html'}; report: {out / 'report.txt'}")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
    print("[demo] the operator has stopped; the cluster stays up, as the demo left it:")
    print('[demo]   eval "$(hack/cluster.sh env)"; kubectl get gw,pods -A')
    print("[demo] to run the operator again (Ctrl-C stops it):")
    print("[demo]   .venv/bin/rightsizer run --standalone --prometheus-url $RIGHTSIZER_PROMETHEUS_URL")
    print("[demo] tear down: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
