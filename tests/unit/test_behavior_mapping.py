"""``behavior`` as users write it becomes the core's rate rules; what they leave unset is HPA's."""

from __future__ import annotations

from typing import Any

import pytest

from rightsizer.api.v1alpha1 import GPUWorkloadSpec
from rightsizer.core.scaling_rate import LimitKind, RateLimit, Select, StepRule
from rightsizer.runtime.mapping import scaling_policy

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
    "workloadType": "Inference",
    "maxReplicas": 10,
}


def rules(behavior: dict[str, Any]) -> tuple[StepRule, StepRule]:
    policy = scaling_policy(GPUWorkloadSpec.model_validate({**BASE, "behavior": behavior}))
    return policy.scale_up, policy.scale_down


def test_unset_is_hpas_default() -> None:
    up, down = rules({})
    assert up == StepRule(0, (RateLimit(LimitKind.PODS, 4, 15), RateLimit(LimitKind.PERCENT, 100, 15)))
    assert down == StepRule(300, (RateLimit(LimitKind.PERCENT, 100, 15),))


def test_a_window_alone_keeps_the_default_policies() -> None:
    up, down = rules({"scaleUp": {"stabilizationWindowSeconds": 30}, "scaleDown": {"selectPolicy": "Min"}})
    assert (up.stabilization_seconds, len(up.limits), up.select) == (30, 2, Select.MAX)
    assert (down.stabilization_seconds, down.select) == (300, Select.MIN)


def test_the_shorthand_is_one_policy_each_over_period_seconds() -> None:
    up, _ = rules({"scaleUp": {"maxStep": 2, "maxPercent": 50, "periodSeconds": 60}})
    assert up.limits == (RateLimit(LimitKind.PODS, 2, 60), RateLimit(LimitKind.PERCENT, 50, 60))
    _, down = rules({"scaleDown": {"maxStep": 1}})
    assert down.limits == (RateLimit(LimitKind.PODS, 1, 15),)


def test_policies_are_taken_as_written() -> None:
    written = {
        "selectPolicy": "Disabled",
        "policies": [
            {"type": "Percent", "value": 10, "periodSeconds": 60},
            {"type": "Pods", "value": 3, "periodSeconds": 30},
        ],
    }
    _, down = rules({"scaleDown": written})
    assert down == StepRule(
        300, (RateLimit(LimitKind.PERCENT, 10, 60), RateLimit(LimitKind.PODS, 3, 30)), Select.DISABLED
    )
