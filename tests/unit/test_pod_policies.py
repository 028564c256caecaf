"""Which GPUWorkload a pod belongs to: its owner chain, its target's /scale selector, or the annotation
the workload loop writes; and what cannot be resolved protects (core/ownership.py, runtime/mapping.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rightsizer.api.annotations import WORKLOAD_ANNOTATION
from rightsizer.core.budgets import PodPolicy
from rightsizer.core.ownership import pod_policies
from rightsizer.core.snapshot import Pod
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.runtime.mapping import workload_claims
from tests.unit.planner_builders import kube_list, pod

pytestmark = pytest.mark.unit


def gw(name: str, kind: str, target: tuple[str, str], **protection: Any) -> dict[str, Any]:
    api_version = "apps/v1" if target[0] in ("Deployment", "StatefulSet") else "example.com/v1"
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": api_version, "kind": target[0], "name": target[1]},
        "workloadType": kind,
        "protection": protection,
    }
    if kind == "Inference":
        spec["maxReplicas"] = 4
    return {"metadata": {"namespace": "ml", "name": name}, "spec": spec}


def pods(*specs: tuple[str, str | None, str | None, dict[str, str]]) -> list[Pod]:
    """(name, owner kind, owner name, labels) in namespace ml."""
    items = []
    for name, kind, owner, labels in specs:
        item = pod(name, "a1", namespace="ml", labels=labels or {"app": name}, owner=kind)
        if kind is not None:
            item["metadata"]["ownerReferences"][0]["name"] = owner
        items.append(item)
    return list(snapshot_from_document(kube_list(*items)).pods)


OWNERS = {("ml", "ReplicaSet", "chat-7d9f"): ("Deployment", "chat")}


def policies(
    workloads: list[dict[str, Any]],
    the_pods: list[Pod],
    selectors: dict[str, str] | None = None,
    unresolved: dict[str, str] | None = None,
) -> dict[str, PodPolicy]:
    claims = workload_claims(workloads, selectors or {}, unresolved or {})
    return pod_policies(the_pods, claims, OWNERS, WORKLOAD_ANNOTATION)


def test_a_new_pod_belongs_to_its_workload_through_its_owner_chain() -> None:
    # No rightsizer.io/workload annotation yet: the workload loop has not seen these pods.
    found = policies(
        [
            gw("chat", "Inference", ("Deployment", "chat"), doNotDisrupt=True),
            gw("train", "Training", ("StatefulSet", "train")),
        ],
        pods(
            ("chat-7d9f-x1", "ReplicaSet", "chat-7d9f", {}),
            ("train-0", "StatefulSet", "train", {}),
            ("other-1", "ReplicaSet", "other-5c", {}),
        ),
    )
    assert found["ml/chat-7d9f-x1"].protected
    assert found["ml/chat-7d9f-x1"].workload == "ml/chat"
    assert found["ml/train-0"].training and not found["ml/train-0"].allow_disruption
    assert "ml/other-1" not in found


def test_targets_without_owner_links_are_matched_by_their_scale_selector() -> None:
    found = policies(
        [gw("lws", "Inference", ("LeaderWorkerSet", "llm"), doNotDisrupt=True)],
        pods(
            ("llm-0", "StatefulSet", "llm", {"leaderworkerset.sigs.k8s.io/name": "llm"}),
            ("llm-0-1", "StatefulSet", "llm-0", {"leaderworkerset.sigs.k8s.io/name": "llm"}),
            ("stray", "ReplicaSet", "x", {"app": "stray"}),
        ),
        selectors={"ml/lws": "leaderworkerset.sigs.k8s.io/name=llm"},
    )
    assert set(found) == {"ml/llm-0", "ml/llm-0-1"}


def test_the_annotation_still_claims_a_pod() -> None:
    annotated = pod("sweep-1", "a1", namespace="ml", annotations={WORKLOAD_ANNOTATION: "sweep"})
    the_pods = list(snapshot_from_document(kube_list(annotated)).pods)
    found = policies([gw("sweep", "Training", ("PyTorchJob", "s"), allowConsolidation=True)], the_pods)
    assert found["ml/sweep-1"] == PodPolicy(training=True, allow_disruption=True, workload="ml/sweep")


def test_a_workload_whose_pods_cannot_be_found_protects_the_unclaimed_pods_of_its_namespace() -> None:
    workloads = [
        gw("guarded", "Inference", ("RayCluster", "r"), doNotDisrupt=True),
        gw("chat", "Inference", ("Deployment", "chat")),
    ]
    the_pods = pods(("r-head", "RayCluster", "r2", {}), ("chat-7d9f-x1", "ReplicaSet", "chat-7d9f", {}))
    found = policies(workloads, the_pods, unresolved={"ml/guarded": "HTTP 503"})
    assert found["ml/r-head"].protected
    assert not found["ml/chat-7d9f-x1"].protected  # claimed by a workload that was resolved
    # Resolved, the RayCluster's selector does not match r-head: nothing protects it any more.
    assert "ml/r-head" not in policies(workloads, the_pods, selectors={"ml/guarded": "ray.io/cluster=r"})


def test_a_spec_that_does_not_parse_protects() -> None:
    broken = {
        "metadata": {"namespace": "ml", "name": "odd"},
        "spec": {"targetRef": {"kind": "X", "name": "y"}},
    }
    found = policies([broken], pods(("y-1", "X", "y", {}), ("z-1", "ReplicaSet", "z", {})))
    assert found["ml/y-1"].protected and found["ml/z-1"].protected


def test_the_strictest_policy_wins_when_two_workloads_claim_a_pod() -> None:
    found = policies(
        [
            gw("a", "Inference", ("Deployment", "chat"), startupGracePeriod="30m"),
            gw("b", "Training", ("Deployment", "chat"), allowConsolidation=True, startupGracePeriod="1h"),
        ],
        pods(("chat-7d9f-x1", "ReplicaSet", "chat-7d9f", {})),
    )
    policy = found["ml/chat-7d9f-x1"]
    assert policy.training and policy.allow_disruption and not policy.protected
    assert policy.startup_grace == timedelta(hours=1)
    assert policy.workload == "ml/a, ml/b"
