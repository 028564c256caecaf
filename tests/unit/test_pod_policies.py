"""What GPUWorkloads say about their pods reaches the consolidation planner."""

from __future__ import annotations

import pytest

from rightsizer.core.budgets import PodPolicy
from rightsizer.runtime.mapping import WORKLOAD_ANNOTATION, pod_policies

pytestmark = pytest.mark.unit


def gw(name: str, kind: str, **protection: bool) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ml", "name": name},
        "spec": {"workloadType": kind, "protection": protection},
    }


def test_protected_and_training_workloads_mark_their_pods() -> None:
    pods = [
        ("ml", "chat-1", {WORKLOAD_ANNOTATION: "chat"}),
        ("ml", "train-1", {WORKLOAD_ANNOTATION: "train"}),
        ("ml", "sweep-1", {WORKLOAD_ANNOTATION: "sweep"}),
        ("ml", "stray", {}),
        ("other", "chat-1", {WORKLOAD_ANNOTATION: "chat"}),  # same name, other namespace: not ours
    ]
    workloads = [
        gw("chat", "Inference", doNotDisrupt=True),
        gw("train", "Training"),
        gw("sweep", "Training", allowConsolidation=True),
    ]
    policies = pod_policies(pods, workloads)
    assert policies == {
        "ml/chat-1": PodPolicy(protected=True, training=False, allow_disruption=True),
        "ml/train-1": PodPolicy(protected=False, training=True, allow_disruption=False),
        "ml/sweep-1": PodPolicy(protected=False, training=True, allow_disruption=True),
    }
