"""The demo fleet: inference services with a diurnal load, training jobs that go idle, a CPU pod on a
GPU node. Run by `make demo` (hack/demo.sh) against the local cluster; prints what the GPUs really do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import yaml
from prometheus_api_client import PrometheusConnect

NAMESPACE = "gpu-demo"
SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"


def deployment(name: str, replicas: int, gpus: int, product: str | None, kind: str) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": "2", "memory": "8Gi"}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    spec: dict[str, Any] = {
        "containers": [
            {"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": requests}}
        ]
    }
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


def fleet() -> list[dict[str, Any]]:
    return [
        deployment("chat-llm", 4, 1, "NVIDIA-A100-SXM4-80GB", "Inference"),
        deployment("embeddings", 3, 1, "NVIDIA-L4", "Inference"),
        deployment("pretrain-7b", 1, 4, "NVIDIA-A100-SXM4-80GB", "Training"),
        deployment("finetune-idle", 2, 2, "NVIDIA-A100-SXM4-80GB", "Training"),
        deployment("batch-report", 1, 0, None, "Inference"),
    ]


def scenario() -> dict[str, Any]:
    # A compressed "day": chat load rises and falls every 4 minutes; the fine-tune has finished but
    # still holds its GPUs; pre-training is busy throughout.
    day = [[0, 20], [60, 55], [120, 90], [180, 45]]
    return {
        "rules": [
            {"selector": {"app": "chat-llm"}, "series": [*day, [240, 20], [300, 55], [360, 90], [420, 45]]},
            {"selector": {"app": "embeddings"}, "util": 12, "memoryUsedMiB": 3000},
            {"selector": {"app": "pretrain-7b"}, "util": 96, "memoryUsedMiB": 70000},
            {"selector": {"app": "finetune-idle"}, "util": 0, "memoryUsedMiB": 1200},
        ]
    }


def kubectl(*args: str, input: str | None = None) -> str:
    cmd = ["kubectl", *args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, check=True).stdout


def apply_fleet() -> None:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    docs += fleet()
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "fake-dcgm-scenario",
                "namespace": NAMESPACE,
                "labels": {SCENARIO_LABEL: "true"},
            },
            "data": {"scenario.yaml": yaml.safe_dump(scenario())},
        }
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def show(prom: PrometheusConnect) -> None:
    rows = prom.custom_query(f'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{{namespace="{NAMESPACE}"}})')
    idle = prom.custom_query('count(DCGM_FI_DEV_GPU_UTIL{pod=""} == 0)')
    print(f"\n{time.strftime('%H:%M:%S')}  GPU utilisation per pod (from Prometheus)")
    for r in sorted(rows, key=lambda r: r["metric"].get("pod", "")):
        util = float(r["value"][1])
        bar = "#" * int(util / 5)
        print(f"  {r['metric'].get('pod', '?'):<40} {util:5.1f}%  {bar}")
    if idle:
        print(f"  GPUs allocated to nobody: {int(float(idle[0]['value'][1]))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=120, help="seconds to watch before exiting")
    parser.add_argument("--every", type=int, default=15)
    args = parser.parse_args(argv)
    prom = PrometheusConnect(url=os.environ["RIGHTSIZER_PROMETHEUS_URL"], disable_ssl=True)
    print(f"[demo] creating the GPU fleet in namespace {NAMESPACE}")
    apply_fleet()
    print(kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide"))
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        time.sleep(args.every)
        show(prom)
    print("\n[demo] done. The cluster stays up: KUBECONFIG=" + os.environ.get("KUBECONFIG", ""))
    print("[demo] explore with: kubectl get pods -A -o wide; stop with: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
