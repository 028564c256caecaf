"""The real API server accepts our CRDs, refuses bad objects naming the field, and prints our columns.

The invalid objects are the table of tests/unit/test_api_validation.py, where the models and a
CEL interpreter are held to the same verdicts; here the API server has the last word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from rightsizer.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    CostStatus,
    GPUNodePoolStatus,
    GPUWorkloadSpec,
    GPUWorkloadStatus,
    ReplicaCounts,
    ReplicaUtilization,
    TargetStatus,
    Utilization,
)
from tests.support.cluster import Cluster, wait_for
from tests.unit.test_api_validation import INFERENCE, INVALID, POOL, Invalid, example_documents

pytestmark = pytest.mark.e2e

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("gpuworkloads.rightsizer.io", "gpunodepools.rightsizer.io")
Kubectl = Callable[..., Any]


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    """Install the generated CRDs (idempotent: other e2e modules install the same files)."""
    cluster.kubectl("apply", "-f", str(CRDS_DIR))
    # Polled rather than `kubectl wait`, which fails outright while a new CRD has no conditions yet.
    wait_for(
        lambda: all(established(cluster.kubectl, name) for name in CRD_NAMES),
        timeout=60,
        describe=lambda: cluster.kubectl("get", "crd", *CRD_NAMES, "-o", "yaml", check=False).stdout,
    )
    wait_for(
        lambda: {"gpuworkloads", "gpunodepools"} <= served_resources(cluster.kubectl),
        timeout=60,
        describe=lambda: cluster.kubectl("api-resources", "--api-group=rightsizer.io", check=False).stdout,
    )


def served_resources(kubectl: Kubectl) -> set[str]:
    names = kubectl("api-resources", "--api-group=rightsizer.io", "-o", "name").stdout.split()
    return {name.split(".", 1)[0] for name in names}


def established(kubectl: Kubectl, name: str) -> bool:
    crd = json.loads(kubectl("get", "crd", name, "-o", "json").stdout)
    conditions = crd.get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    doc = {"apiVersion": "rightsizer.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    return yaml.safe_dump(doc)


def unique(name: str, namespace: str) -> str:
    # GPUNodePools are cluster-scoped: suffix names with the test namespace's random tail.
    return f"{name}-{namespace.rsplit('-', 1)[-1]}"


def test_crds_are_accepted_and_established(crds: None, kubectl: Kubectl) -> None:
    for name in CRD_NAMES:
        crd = json.loads(kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["status"]
        assert conditions.get("NonStructuralSchema") != "True", crd["status"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_api_server_refuses_invalid_object_naming_the_field(
    crds: None, kubectl: Kubectl, namespace: str, case: Invalid
) -> None:
    name = unique(case.id.replace("_", "-"), namespace)
    refused = kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest(case.kind, name, case.spec()), check=False
    )
    assert refused.returncode != 0, f"accepted: {refused.stdout}"
    assert case.field in refused.stderr, refused.stderr
    if case.message:
        assert case.message in refused.stderr, refused.stderr


def test_a_typo_in_a_field_name_is_refused(crds: None, kubectl: Kubectl, namespace: str) -> None:
    spec = {**INFERENCE, "maxReplica": 4}
    refused = kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest("GPUWorkload", "typo", spec), check=False
    )
    assert refused.returncode != 0
    assert "unknown field" in refused.stderr and "spec.maxReplica" in refused.stderr, refused.stderr


def test_replacement_types_with_the_same_instance_type_are_refused(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    shape = {
        "instanceType": "g2-standard-12",
        "gpuModel": "NVIDIA-L4",
        "gpusPerNode": 1,
        "pricePerNodeHour": 1,
    }
    spec = {**POOL, "replacementTypes": [shape, shape]}
    name = unique("duplicate-shapes", namespace)
    refused = kubectl("apply", "-f", "-", input=manifest("GPUNodePool", name, spec), check=False)
    assert refused.returncode != 0
    assert "spec.replacementTypes[1]" in refused.stderr and "Duplicate value" in refused.stderr, (
        refused.stderr
    )


@pytest.mark.parametrize("document", example_documents(), ids=lambda d: d["metadata"]["name"])
def test_examples_are_accepted(
    crds: None, kubectl: Kubectl, namespace: str, document: dict[str, Any]
) -> None:
    # Server-side dry run: full validation and defaulting, nothing stored, so the example pools
    # (named like the local cluster's real pools) never reach a running operator.
    accepted = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", input=yaml.safe_dump(document)
    )
    stored = json.loads(accepted.stdout)
    assert stored["spec"]["gpuModel" if document["kind"] == "GPUNodePool" else "workloadType"]


def test_server_defaults_are_the_models_defaults(crds: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest("GPUWorkload", "minimal", INFERENCE))
    stored = json.loads(kubectl("get", "gw", "minimal", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == GPUWorkloadSpec.model_validate(INFERENCE).to_wire()
    assert stored["spec"]["mode"] == "Recommend"


def test_get_gw_shows_type_mode_util_replicas_and_cost(crds: None, kubectl: Kubectl, namespace: str) -> None:
    inference = next(d for d in example_documents() if d["metadata"]["name"] == "llm-server")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(inference))
    status = status_of_a_busy_workload()
    kubectl(
        "patch", "gw", "llm-server", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status.to_wire()}),
    )  # fmt: skip

    header, row = (
        line.split() for line in kubectl("get", "gw", "llm-server", "-n", namespace).stdout.splitlines()
    )
    assert header == ["NAME", "TYPE", "TARGET", "CAN", "MODE", "UTIL%", "REPLICAS", "DESIRED", "$/H", "AGE"]
    assert row[:9] == ["llm-server", "Inference", "Deployment", "Scale", "Enforce", "71.5", "2", "3", "6.4"]
    by_category = kubectl("get", "rightsizer", "-n", namespace, "-o", "name").stdout.split()
    assert "gpuworkload.rightsizer.io/llm-server" in by_category


def status_of_a_busy_workload() -> GPUWorkloadStatus:
    now = datetime.now(UTC).replace(microsecond=0)
    return GPUWorkloadStatus(
        observed_generation=1,
        conditions=(
            Condition(
                type="Ready",
                status=ConditionStatus.TRUE,
                reason="Scaled",
                message="ok",
                last_transition_time=now,
            ),
        ),
        utilization=Utilization(
            aggregate=Decimal("71.5"),
            per_replica=(
                ReplicaUtilization(pod="llm-server-a", percent=Decimal("71.5"), memory_used_mib=20000),
            ),
            sampled_at=now,
        ),
        replicas=ReplicaCounts(current=2, desired=3),
        cost=CostStatus(currency="USD", per_hour=Decimal("6.4"), to_date=Decimal("12.8"), since=now),
        target=TargetStatus(kind="Deployment", actions="Scale"),
    )


def test_get_gnp_shows_model_nodes_gpus_and_idle_cost(crds: None, kubectl: Kubectl, namespace: str) -> None:
    name = unique("columns", namespace)
    # Selects no node and has no provider: nothing for a running operator to act on.
    spec = {**POOL, "nodeSelector": {"rightsizer.io/pool": name}}
    kubectl("apply", "-f", "-", input=manifest("GPUNodePool", name, spec))
    try:
        status = GPUNodePoolStatus(
            nodes=2,
            gpus_allocatable=16,
            gpus_requested=10,
            gpus_active=6,
            cost_per_hour=48,
            idle_cost_per_hour=30,
        )
        kubectl(
            "patch", "gnp", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status.to_wire()}),
        )  # fmt: skip
        lines = kubectl("get", "gnp", name).stdout.splitlines()
        assert lines[0].split() == ["NAME", "MODEL", "NODES", "GPUS", "ACTIVE", "IDLE", "$/H", "AGE"]
        assert lines[1].split()[:6] == [name, "NVIDIA-A100-SXM4-80GB", "2", "16", "6", "30"]
    finally:
        kubectl("delete", "gnp", name, "--ignore-not-found", "--wait=false")


def test_kubectl_explain_shows_the_field_docs(crds: None, kubectl: Kubectl) -> None:
    def explain(field: str) -> str:
        # The published OpenAPI may trail the CRD by a moment; kubectl wraps long lines.
        return " ".join(wait_for(lambda: kubectl("explain", field, check=False).stdout, timeout=60).split())

    assert "0 lets an Inference workload scale to zero (needs wakeUp)" in explain("gw.spec.minReplicas")
    assert "Power usage effectiveness of the data centre" in explain("gnp.spec.pue")
