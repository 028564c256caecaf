"""The API models: camelCase on the wire, safe defaults, loud typos, values that round-trip."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from rightsizer.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    GPUNodePool,
    GPUNodePoolSpec,
    GpuSignal,
    GPUWorkload,
    GPUWorkloadSpec,
    GPUWorkloadStatus,
    IdleAction,
    InvalidResource,
    MetricSource,
    Mode,
    ProviderType,
    WorkloadType,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def workload(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": "llm", "namespace": "ml", "generation": 3, "uid": "u-1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
            "workloadType": "Inference",
            "maxReplicas": 4,
            **spec,
        },
    }


def pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "GPUNodePool",
        "metadata": {"name": "a100"},
        "spec": {
            "nodeSelector": {"rightsizer.io/pool": "a100"},
            "gpuModel": "A100",
            "gpusPerNode": 8,
            **spec,
        },
    }


def test_defaults_are_the_safe_ones() -> None:
    spec = GPUWorkload.parse(workload()).spec
    assert spec.mode is Mode.RECOMMEND  # changes nothing until the user opts into Enforce
    assert spec.metric.source is MetricSource.PROMETHEUS
    assert spec.metric.signal is GpuSignal.AUTO  # MIG reports no GPU_UTIL; Auto reads it anyway
    assert spec.metric.window == timedelta(minutes=5)
    assert spec.target_utilization == Decimal(60)
    assert spec.min_replicas == 1
    assert spec.behavior.tolerance == Decimal("0.1")
    assert spec.protection.do_not_disrupt is False


def test_fields_are_camel_case_on_the_wire_and_snake_case_in_python() -> None:
    obj = GPUWorkload.parse(workload(minReplicas=2, idlePolicy=None))
    assert obj.spec.target_ref.api_version == "apps/v1"
    wire = obj.spec.to_wire()
    assert wire["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
    assert wire["minReplicas"] == 2 and "min_replicas" not in wire
    assert wire["metric"]["window"] == "5m"
    assert wire["targetUtilization"] == 60 and isinstance(wire["targetUtilization"], int)
    assert "idlePolicy" not in wire  # unset fields are left out, not sent as null


def test_python_names_are_accepted_too() -> None:
    spec = GPUWorkloadSpec(
        target_ref={"api_version": "apps/v1", "kind": "Deployment", "name": "x"},  # type: ignore[arg-type]
        workload_type=WorkloadType.TRAINING,
    )
    assert spec.target_ref.name == "x"


def test_a_typo_in_a_spec_is_an_error_not_silence() -> None:
    with pytest.raises(ValidationError, match="maxReplica"):
        GPUWorkloadSpec.model_validate({**workload()["spec"], "maxReplica": 4})


def test_unknown_fields_in_status_are_ignored_for_newer_operators() -> None:
    status = GPUWorkloadStatus.model_validate({"observedGeneration": 2, "somethingNew": {"a": 1}})
    assert status.observed_generation == 2


def test_prices_and_percentages_are_exact_decimals() -> None:
    spec = GPUNodePool.parse(pool(pricePerGpuHour=0.1, pue=1.3, energyPricePerKwh=0.12)).spec
    assert spec.price_per_gpu_hour == Decimal("0.1")
    assert spec.pue == Decimal("1.3")
    assert spec.to_wire()["pricePerGpuHour"] == 0.1


def test_pool_defaults() -> None:
    spec = GPUNodePool.parse(pool(pricePerGpuHour=3)).spec
    assert spec.provider.type is ProviderType.NONE
    assert spec.pue == 1 and spec.currency == "USD" and spec.min_nodes == 0
    assert spec.scale_down_after == timedelta(minutes=10)
    assert [b.nodes for b in spec.disruption.budgets] == ["10%"]


def test_gpu_memory_is_spelled_mib_on_the_wire() -> None:
    spec = GPUNodePool.parse(pool(pricePerGpuHour=3, gpuMemoryMiB=81920)).spec
    assert spec.gpu_memory_mib == 81920
    assert spec.to_wire()["gpuMemoryMiB"] == 81920


def test_node_template_capacity_keeps_quantities_as_written() -> None:
    spec = GPUNodePool.parse(
        pool(
            pricePerGpuHour=3,
            provider={"type": "kwok", "nodeTemplate": {"capacity": {"cpu": 64, "memory": "512Gi"}}},
        )
    ).spec
    assert spec.provider.node_template is not None
    assert spec.provider.node_template.capacity == {"cpu": 64, "memory": "512Gi"}


def test_replacement_types_must_have_distinct_instance_types() -> None:
    shape = {
        "instanceType": "g2-standard-12",
        "gpuModel": "NVIDIA-L4",
        "gpusPerNode": 1,
        "pricePerNodeHour": 1,
    }
    with pytest.raises(ValidationError, match=r"instanceType g2-standard-12 twice"):
        GPUNodePoolSpec.model_validate(
            {**pool(pricePerGpuHour=3)["spec"], "replacementTypes": [shape, shape]}
        )


@pytest.mark.parametrize(
    ("workload_type", "protection", "allowed"),
    [
        ("Inference", {}, True),
        ("Training", {}, False),
        ("Training", {"allowConsolidation": True}, True),
        ("Inference", {"allowConsolidation": False}, False),
        ("Inference", {"doNotDisrupt": True}, False),
    ],
)
def test_consolidation_allowed_defaults_by_type_and_protection_wins(
    workload_type: str, protection: dict[str, bool], allowed: bool
) -> None:
    obj = workload(workloadType=workload_type, protection=protection)
    if workload_type == "Training":
        del obj["spec"]["maxReplicas"]
    assert GPUWorkload.parse(obj).spec.consolidation_allowed is allowed


def test_idle_policy_defaults() -> None:
    obj = workload(workloadType="Training", idlePolicy={})
    del obj["spec"]["maxReplicas"]
    policy = GPUWorkload.parse(obj).spec.idle_policy
    assert policy is not None
    assert (policy.threshold_percent, policy.idle_for, policy.action) == (
        Decimal(5),
        timedelta(minutes=30),
        IdleAction.RECOMMEND,
    )


def test_parse_error_names_the_object_and_the_fields() -> None:
    with pytest.raises(InvalidResource) as refused:
        GPUWorkload.parse(workload(targetUtilization=150, metric={"window": "soon"}))
    message = str(refused.value)
    assert message.startswith("GPUWorkload ml/llm is invalid: ")
    assert "spec.targetUtilization" in message and "spec.metric.window" in message


def test_whole_object_round_trips_through_the_wire() -> None:
    status = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Scaled",
                "lastTransitionTime": "2026-11-25T10:00:00Z",
            }
        ],
        "utilization": {
            "aggregate": 71.5,
            "perReplica": [{"pod": "llm-a", "percent": 71.5, "memoryUsedMiB": 20000}],
        },
        "replicas": {"current": 2, "desired": 3},
        "cost": {"currency": "USD", "perHour": 6.4, "toDate": 12.8, "gpuEfficiency": 0.715},
    }
    obj = GPUWorkload.parse({**workload(), "status": status})
    assert obj.status is not None and obj.status.utilization is not None
    assert obj.status.utilization.per_replica[0].memory_used_mib == 20000
    again = GPUWorkload.parse(obj.to_wire())
    assert again == obj
    assert obj.to_wire()["status"]["conditions"][0]["lastTransitionTime"] == "2026-11-25T10:00:00Z"


def test_condition_reason_must_be_camel_case() -> None:
    with pytest.raises(ValidationError, match="reason"):
        Condition(type="Ready", status=ConditionStatus.TRUE, reason="not ok", last_transition_time=T0)


class _ReadOnlyMapping(Mapping[str, Any]):
    """Like kopf's Body: a mapping view that is not a dict."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return _ReadOnlyMapping(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_parse_accepts_mapping_views_such_as_kopf_bodies() -> None:
    obj = GPUWorkload.parse(_ReadOnlyMapping(workload(minReplicas=2)))
    assert obj.metadata.namespace == "ml" and obj.spec.min_replicas == 2
