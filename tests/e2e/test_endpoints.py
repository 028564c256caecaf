"""What leaves the operator through its own endpoints: /metrics and /healthz carry names and numbers,
never the contents of the workloads (annotations, environment, queries, messages)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.world import World, gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

MARKER = "confidential-7f3a9"
# A sample line of the text exposition format: name, optional labels, a number.
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
# Kubernetes names (namespaces, objects, kinds), reason codes, actions, currencies.
NAME_OR_CODE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$")


def labelled_deployment(name: str) -> dict[str, Any]:
    """A GPU Deployment carrying the marker wherever users keep private data."""
    deployment = gpu_deployment(name, 2)
    deployment["metadata"]["annotations"] = {"team.example.com/contact": MARKER}
    pod = deployment["spec"]["template"]
    pod["metadata"]["annotations"] = {"team.example.com/secret-ref": MARKER}
    pod["spec"]["containers"][0]["env"] = [{"name": "API_KEY", "value": MARKER}]
    return deployment


def is_number(text: str) -> bool:
    try:
        float(text)  # histogram buckets: le="0.05", le="+Inf"
    except ValueError:
        return False
    return True


def parse_samples(text: str) -> list[tuple[str, dict[str, str], str]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = {m["key"]: m["value"] for m in LABEL.finditer(match["labels"] or "")}
        samples.append((match["name"], labels, match["value"]))
    return samples


def test_metrics_and_health_endpoints_expose_only_names_and_numbers(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization
) -> None:
    cluster.kubectl("apply", "-f", "crds/")
    world = World(cluster, namespace)
    cluster.apply(labelled_deployment("chat"), namespace)
    world.wait_ready("chat", 2)
    gpu_util.set(namespace, 90, pod_prefix="chat-")
    # The marker also sits in the GPUWorkload: an annotation and a PromQL comment in a custom query.
    served = gpu_workload("served", "chat", maxReplicas=3)
    served["metadata"]["annotations"] = {"team.example.com/ticket": MARKER}
    broken = gpu_workload(
        "broken",
        "missing",
        metric={"query": f'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{{pod=~"{{{{pods}}}}"}}) # {MARKER}'},
    )
    with OperatorProcess.start(cluster.kubeconfig, namespace, cluster.prometheus_url) as op:
        cluster.apply([served, broken], namespace)
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("served"))
        wait_for(lambda: world.condition("broken", "Ready") is not None, timeout=30, describe=world.describe)
        metrics = requests.get(op.metrics_url, timeout=5)
        health = requests.get(op.health_url, timeout=5)

    assert metrics.ok and health.ok
    for body in (metrics.text, health.text):
        assert MARKER not in body
    samples = parse_samples(metrics.text)
    assert {"rightsizer_workload_cost_per_hour", "rightsizer_decisions_total"} <= {n for n, _, _ in samples}
    assert any(labels.get("workload") == "served" for _, labels, _ in samples)
    for name, labels, value in samples:
        float(value)  # every value is a number (NaN and ±Inf parse too)
        for key, label in labels.items():
            assert NAME_OR_CODE.match(label) or is_number(label), f"{name}{{{key}={label!r}}} is not a name"
    # /healthz says whether the operator is alive, nothing about what it manages.
    assert "served" not in health.text and namespace not in health.text
