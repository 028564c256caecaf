"""Bad GPUWorkloads and GPUNodePools are refused, naming the field, by both sides of the API.

One table of invalid objects drives three checks: the pydantic models refuse each one; the
generated CRD refuses each one too (OpenAPI checks through jsonschema, CEL rules through a CEL
interpreter, after applying the CRD's defaults as the API server does); and, in
tests/e2e/test_crd_validation.py, the real API server refuses each one with the same field.
A property test then checks that the CEL rules and their Python twins never disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from celpy import celtypes
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rightsizer.api import crdgen
from rightsizer.api.v1alpha1 import GPUNodePool, GPUNodePoolSpec, GPUWorkload, GPUWorkloadSpec

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Marker(Enum):
    DELETE = "delete"  # an enum member survives deepcopy as itself


DELETE = _Marker.DELETE
"""In a case's patch: remove this field from the base object."""

INFERENCE: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-server"},
    "workloadType": "Inference",
    "minReplicas": 1,
    "maxReplicas": 4,
}
TRAINING: dict[str, Any] = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "finetune"},
    "workloadType": "Training",
}
POOL: dict[str, Any] = {
    "nodeSelector": {"rightsizer.io/pool": "a100"},
    "gpuModel": "NVIDIA-A100-SXM4-80GB",
    "gpusPerNode": 8,
    "pricePerGpuHour": 3,
}
WAKE_UP = {"query": "sum(rate(http_requests_total[1m]))"}
GPU_METRIC: dict[str, Any] = {"type": "Gpu", "target": {"type": "Utilization", "averageUtilization": 60}}
WAITING_METRIC: dict[str, Any] = {
    "type": "Pods",
    "name": "requestsWaiting",
    "query": 'avg by (namespace, pod) (vllm:num_requests_waiting{namespace="{{namespace}}"})',
    "target": {"type": "AverageValue", "averageValue": 5},
}


@dataclass(frozen=True)
class Invalid:
    """An object the API must refuse: ``field`` is the path the error names, ``message`` (when
    the rule is ours) a fragment of what it says."""

    id: str
    kind: str
    base: Mapping[str, Any]
    patch: Mapping[str, Any]
    field: str
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return merge(self.base, self.patch)

    def manifest(self, name: str | None = None) -> dict[str, Any]:
        return {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": self.kind,
            "metadata": {"name": name or self.id.replace("_", "-")},
            "spec": self.spec(),
        }


def merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into ``base``; an empty mapping in the patch replaces, not merges."""
    result = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is DELETE:
            result.pop(key, None)
        elif isinstance(value, Mapping) and value and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


W, P = "GPUWorkload", "GPUNodePool"
INVALID = [
    Invalid(
        "min_replicas_above_max",
        W,
        INFERENCE,
        {"minReplicas": 5, "maxReplicas": 2},
        "spec.minReplicas",
        "spec.minReplicas must be <= spec.maxReplicas",
    ),
    Invalid("target_utilization_zero", W, INFERENCE, {"targetUtilization": 0}, "spec.targetUtilization"),
    Invalid("target_utilization_150", W, INFERENCE, {"targetUtilization": 150}, "spec.targetUtilization"),
    Invalid(
        "scale_to_zero_for_training",
        W,
        TRAINING,
        {"minReplicas": 0, "wakeUp": WAKE_UP},
        "spec.minReplicas",
        "spec.minReplicas may be 0 only when spec.workloadType is Inference",
    ),
    Invalid(
        "scale_to_zero_without_wake_up",
        W,
        INFERENCE,
        {"minReplicas": 0},
        "spec.wakeUp",
        "spec.wakeUp is required when spec.minReplicas is 0",
    ),
    Invalid(
        "inference_without_max_replicas",
        W,
        INFERENCE,
        {"maxReplicas": DELETE},
        "spec.maxReplicas",
        "spec.maxReplicas is required when spec.workloadType is Inference",
    ),
    Invalid("negative_min_replicas", W, INFERENCE, {"minReplicas": -1}, "spec.minReplicas"),
    Invalid(
        "two_metric_sources",
        W,
        INFERENCE,
        {"metric": {"source": ["Prometheus", "DCGM"]}},
        "spec.metric.source",
    ),
    Invalid("unknown_metric_source", W, INFERENCE, {"metric": {"source": "Datadog"}}, "spec.metric.source"),
    Invalid("unknown_signal", W, INFERENCE, {"metric": {"signal": "GPU_BUSY"}}, "spec.metric.signal"),
    Invalid(
        "custom_query_with_dcgm_source",
        W,
        INFERENCE,
        {"metric": {"source": "DCGM", "query": "avg(DCGM_FI_DEV_GPU_UTIL)"}},
        "spec.metric.query",
        "spec.metric.query requires spec.metric.source Prometheus",
    ),
    Invalid(
        "window_not_a_duration",
        W,
        INFERENCE,
        {"metric": {"window": "5 minutes"}},
        "spec.metric.window",
        "must be a duration such as 30s, 5m or 1h30m",
    ),
    Invalid(
        "idle_for_not_a_duration",
        W,
        TRAINING,
        {"idlePolicy": {"idleFor": "half an hour"}},
        "spec.idlePolicy.idleFor",
        "must be a duration",
    ),
    Invalid(
        "idle_policy_on_inference",
        W,
        INFERENCE,
        {"idlePolicy": {"action": "Suspend"}},
        "spec.idlePolicy",
        "spec.idlePolicy applies only when spec.workloadType is Training",
    ),
    Invalid(
        "unknown_idle_action", W, TRAINING, {"idlePolicy": {"action": "Delete"}}, "spec.idlePolicy.action"
    ),
    Invalid("unknown_mode", W, INFERENCE, {"mode": "Auto"}, "spec.mode"),
    Invalid("unknown_workload_type", W, INFERENCE, {"workloadType": "Batch"}, "spec.workloadType"),
    Invalid("tolerance_of_one", W, INFERENCE, {"behavior": {"tolerance": 1}}, "spec.behavior.tolerance"),
    Invalid(
        "stabilization_window_above_an_hour",
        W,
        INFERENCE,
        {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 7200}}},
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
    ),
    Invalid(
        "policies_and_max_step",
        W,
        INFERENCE,
        {
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}], "maxStep": 2}
            }
        },
        "spec.behavior.scaleUp.policies",
        "spec.behavior.scaleUp.policies cannot be combined with maxStep or maxPercent",
    ),
    Invalid(
        "policies_and_max_percent",
        W,
        INFERENCE,
        {
            "behavior": {
                "scaleDown": {
                    "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
                    "maxPercent": 50,
                }
            }
        },
        "spec.behavior.scaleDown.policies",
        "spec.behavior.scaleDown.policies cannot be combined with maxStep or maxPercent",
    ),
    Invalid(
        "empty_policies",
        W,
        INFERENCE,
        {"behavior": {"scaleDown": {"policies": []}}},
        "spec.behavior.scaleDown.policies",
    ),
    Invalid(
        "unknown_select_policy",
        W,
        INFERENCE,
        {"behavior": {"scaleUp": {"selectPolicy": "Largest"}}},
        "spec.behavior.scaleUp.selectPolicy",
    ),
    Invalid(
        "unknown_policy_type",
        W,
        INFERENCE,
        {"behavior": {"scaleUp": {"policies": [{"type": "Replicas", "value": 2, "periodSeconds": 60}]}}},
        "spec.behavior.scaleUp.policies[0].type",
    ),
    Invalid(
        "policy_period_above_half_an_hour",
        W,
        INFERENCE,
        {"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 3600}]}}},
        "spec.behavior.scaleUp.policies[0].periodSeconds",
    ),
    Invalid(
        "policy_value_zero",
        W,
        INFERENCE,
        {"behavior": {"scaleDown": {"policies": [{"type": "Percent", "value": 0, "periodSeconds": 60}]}}},
        "spec.behavior.scaleDown.policies[0].value",
    ),
    Invalid(
        "metrics_on_training",
        W,
        TRAINING,
        {"metrics": [GPU_METRIC]},
        "spec.metrics",
        "spec.metrics applies only when spec.workloadType is Inference",
    ),
    Invalid(
        "two_gpu_metrics",
        W,
        INFERENCE,
        {"metrics": [GPU_METRIC, GPU_METRIC]},
        "spec.metrics",
        "spec.metrics may hold at most one Gpu metric",
    ),
    Invalid(
        "metric_names_repeat",
        W,
        INFERENCE,
        {"metrics": [WAITING_METRIC, WAITING_METRIC]},
        "spec.metrics",
        "spec.metrics names must be unique",
    ),
    Invalid(
        "pods_metric_with_a_value_target",
        W,
        INFERENCE,
        {"metrics": [{**WAITING_METRIC, "target": {"type": "Value", "value": 5}}]},
        "spec.metrics[0].target.type",
        "AverageValue for Pods",
    ),
    Invalid(
        "external_metric_without_query",
        W,
        INFERENCE,
        {"metrics": [{"type": "External", "name": "queue", "target": {"type": "Value", "value": 1}}]},
        "spec.metrics[0].query",
        "name and query are required for Pods, Object and External metrics",
    ),
    Invalid(
        "gpu_metric_with_a_query",
        W,
        INFERENCE,
        {"metrics": [{**GPU_METRIC, "query": "avg(DCGM_FI_DEV_GPU_UTIL)"}]},
        "spec.metrics[0].query",
        "a Gpu metric uses spec.metric",
    ),
    Invalid(
        "signal_on_a_pods_metric",
        W,
        INFERENCE,
        {"metrics": [{**WAITING_METRIC, "signal": "DCGM_FI_DEV_GPU_UTIL"}]},
        "spec.metrics[0].signal",
        "signal is for a Gpu metric only",
    ),
    Invalid(
        "utilization_target_without_a_percent",
        W,
        INFERENCE,
        {"metrics": [{"type": "Gpu", "target": {"type": "Utilization"}}]},
        "spec.metrics[0].target.averageUtilization",
        "averageUtilization is set exactly when target.type is Utilization",
    ),
    Invalid(
        "metric_name_with_a_dash",
        W,
        INFERENCE,
        {"metrics": [{**WAITING_METRIC, "name": "requests-waiting"}]},
        "spec.metrics[0].name",
    ),
    Invalid(
        "wake_up_replicas_above_max",
        W,
        INFERENCE,
        {"minReplicas": 0, "maxReplicas": 2, "wakeUp": {**WAKE_UP, "replicas": 3}},
        "spec.wakeUp.replicas",
        "spec.wakeUp.replicas must be <= spec.maxReplicas",
    ),
    Invalid(
        "consolidation_allowed_but_do_not_disrupt",
        W,
        INFERENCE,
        {"protection": {"doNotDisrupt": True, "allowConsolidation": True}},
        "spec.protection.allowConsolidation",
        "cannot be true when spec.protection.doNotDisrupt is true",
    ),
    Invalid(
        "target_name_not_dns",
        W,
        INFERENCE,
        {"targetRef": {"name": "LLM_Server"}},
        "spec.targetRef.name",
        "must be a lower-case DNS subdomain name",
    ),
    Invalid("missing_target_ref", W, INFERENCE, {"targetRef": DELETE}, "spec.targetRef"),
    Invalid(
        "pricing_without_a_price",
        W,
        INFERENCE,
        {"pricing": {"currency": "EUR"}},
        "spec.pricing",
        "spec.pricing must set pricePerGpuHour or cpuCorePricePerHour",
    ),
    Invalid(
        "pricing_absurdly_huge",
        W,
        INFERENCE,
        {"pricing": {"pricePerGpuHour": 1e9}},
        "spec.pricing.pricePerGpuHour",
    ),
    Invalid(
        "pricing_currency_not_iso",
        W,
        INFERENCE,
        {"pricing": {"pricePerGpuHour": 2, "currency": "usd"}},
        "spec.pricing.currency",
        "must be a three-letter ISO 4217 currency code",
    ),
    Invalid(
        "both_prices",
        P,
        POOL,
        {"pricePerNodeHour": 24},
        "spec",
        "only one of spec.pricePerGpuHour and spec.pricePerNodeHour may be set",
    ),
    Invalid(
        "no_price",
        P,
        POOL,
        {"pricePerGpuHour": DELETE},
        "spec",
        "one of spec.pricePerGpuHour and spec.pricePerNodeHour must be set",
    ),
    Invalid(
        "no_price_clusterapi",
        P,
        POOL,
        {
            "pricePerGpuHour": DELETE,
            "provider": {"type": "clusterapi", "machineDeployment": {"namespace": "c", "name": "m"}},
        },
        "spec",
        "only a karpenter pool is priced from its nodes' instance types",
    ),
    Invalid(
        "no_node_selector",
        P,
        POOL,
        {"nodeSelector": DELETE},
        "spec.nodeSelector",
        "spec.nodeSelector is required unless spec.provider.type is karpenter",
    ),
    Invalid("negative_price", P, POOL, {"pricePerGpuHour": -1}, "spec.pricePerGpuHour"),
    Invalid(
        "negative_node_price",
        P,
        POOL,
        {"pricePerGpuHour": DELETE, "pricePerNodeHour": -24},
        "spec.pricePerNodeHour",
    ),
    Invalid("price_with_a_wrong_exponent", P, POOL, {"pricePerGpuHour": 3e12}, "spec.pricePerGpuHour"),
    Invalid("price_nan_as_text", P, POOL, {"pricePerGpuHour": "NaN"}, "spec.pricePerGpuHour"),
    Invalid("price_infinity_as_text", P, POOL, {"pricePerGpuHour": "Infinity"}, "spec.pricePerGpuHour"),
    Invalid("price_in_words", P, POOL, {"pricePerGpuHour": "three dollars"}, "spec.pricePerGpuHour"),
    Invalid("price_as_an_object", P, POOL, {"pricePerGpuHour": {"amount": 3}}, "spec.pricePerGpuHour"),
    Invalid("price_as_a_boolean", P, POOL, {"pricePerGpuHour": True}, "spec.pricePerGpuHour"),
    Invalid("energy_price_negative", P, POOL, {"energyPricePerKwh": -0.1}, "spec.energyPricePerKwh"),
    Invalid("overhead_absurdly_huge", P, POOL, {"overheadPerHour": 1e30}, "spec.overheadPerHour"),
    Invalid("watts_per_gpu_absurd", P, POOL, {"wattsPerGpu": 1e6}, "spec.wattsPerGpu"),
    Invalid(
        "replacement_price_absurd",
        P,
        POOL,
        {
            "replacementTypes": [
                {"instanceType": "g2", "gpuModel": "NVIDIA-L4", "gpusPerNode": 1, "pricePerNodeHour": 1e15}
            ]
        },
        "spec.replacementTypes[0].pricePerNodeHour",
    ),
    Invalid(
        "min_nodes_above_max",
        P,
        POOL,
        {"minNodes": 3, "maxNodes": 1},
        "spec.minNodes",
        "spec.minNodes must be <= spec.maxNodes",
    ),
    Invalid(
        "budget_nodes_not_a_count",
        P,
        POOL,
        {"disruption": {"budgets": [{"nodes": "ten"}]}},
        "spec.disruption.budgets[0].nodes",
        "must be a node count such as 1 or a percentage such as 10%",
    ),
    Invalid(
        "budget_above_100_percent",
        P,
        POOL,
        {"disruption": {"budgets": [{"nodes": "150%"}]}},
        "spec.disruption.budgets[0].nodes",
        "must be a node count",
    ),
    Invalid(
        "budget_schedule_without_duration",
        P,
        POOL,
        {"disruption": {"budgets": [{"nodes": "0", "schedule": "0 9 * * 1-5"}]}},
        "spec.disruption.budgets[0]",
        "schedule and duration must be set together",
    ),
    Invalid(
        "budget_schedule_not_cron",
        P,
        POOL,
        {"disruption": {"budgets": [{"nodes": "0", "schedule": "weekdays", "duration": "8h"}]}},
        "spec.disruption.budgets[0].schedule",
        "must be a cron schedule",
    ),
    Invalid(
        "budget_reason_unknown",
        P,
        POOL,
        {"disruption": {"budgets": [{"nodes": "0", "reasons": ["Drifted"]}]}},
        "spec.disruption.budgets[0].reasons[0]",
    ),
    Invalid("pue_above_3", P, POOL, {"pue": 5}, "spec.pue"),
    Invalid("pue_below_1", P, POOL, {"pue": 0.9}, "spec.pue"),
    Invalid(
        "scale_down_after_not_a_duration",
        P,
        POOL,
        {"scaleDownAfter": "ten minutes"},
        "spec.scaleDownAfter",
        "must be a duration",
    ),
    Invalid("empty_node_selector", P, POOL, {"nodeSelector": {}}, "spec.nodeSelector"),
    Invalid("zero_gpus_per_node", P, POOL, {"gpusPerNode": 0}, "spec.gpusPerNode"),
    Invalid("unknown_provider", P, POOL, {"provider": {"type": "aws"}}, "spec.provider.type"),
    Invalid(
        "unknown_consolidation_policy", P, POOL, {"consolidationPolicy": "Always"}, "spec.consolidationPolicy"
    ),
    Invalid(
        "clusterapi_without_machine_deployment",
        P,
        POOL,
        {"provider": {"type": "clusterapi"}},
        "spec.provider.machineDeployment",
        "spec.provider.machineDeployment is required for, and only allowed with, type clusterapi",
    ),
    Invalid(
        "node_template_for_karpenter",
        P,
        POOL,
        {"provider": {"type": "karpenter", "nodePool": "gpu", "nodeTemplate": {"labels": {"a": "b"}}}},
        "spec.provider.nodeTemplate",
        "spec.provider.nodeTemplate is only allowed with type kwok or static",
    ),
    Invalid(
        "idle_watts_above_rated",
        P,
        POOL,
        {"wattsPerGpu": 400, "idleWattsPerGpu": 500},
        "spec.idleWattsPerGpu",
        "spec.idleWattsPerGpu must be <= spec.wattsPerGpu",
    ),
    Invalid(
        "capacity_not_a_quantity",
        P,
        POOL,
        {"provider": {"type": "kwok", "nodeTemplate": {"capacity": {"memory": "lots"}}}},
        "spec.provider.nodeTemplate.capacity.memory",
    ),
]


# --- a small model of what the API server does with a CRD ------------------------------------------


@cache
def openapi_schema(kind: str) -> dict[str, Any]:
    resource = {"GPUWorkload": GPUWorkload, "GPUNodePool": GPUNodePool}[kind]
    crd = crdgen.crd_for(resource)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Fill absent fields from ``default`` top-down, as the API server does before validating."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        free = schema.get("additionalProperties")
        if isinstance(free, Mapping):
            for key in value:
                value[key] = apply_defaults(free, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _path(parts: Iterator[Any] | Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def openapi_errors(schema: Mapping[str, Any], obj: Any) -> list[str]:
    # OpenAPI v3.0 schemas use draft-4 semantics (boolean exclusiveMinimum); x-* keys are ignored.
    errors = []
    for error in jsonschema.Draft4Validator(schema).iter_errors(obj):
        path = list(error.absolute_path)
        if error.validator == "required":
            path.append(error.message.split("'")[1])
        errors.append(f"{_path(path)}: {error.message}")
    return errors


def to_cel(value: Any, schema: Mapping[str, Any]) -> Any:
    """A JSON value as CEL sees it, typed by the schema (a `number` is always a double)."""
    kind = schema.get("type")
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number":
        return celtypes.DoubleType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([to_cel(item, schema.get("items", {})) for item in value])
    if isinstance(value, dict):
        props = schema.get("properties", {})
        free = schema.get("additionalProperties", {})
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, props.get(k, free if isinstance(free, Mapping) else {}))
                for k, v in value.items()
            }
        )
    raise TypeError(f"no CEL value for {value!r}")


_CEL = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def cel_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        result = _program(rule["rule"]).evaluate({"self": to_cel(value, schema)})
        if result is not True and result != celtypes.BoolType(True):
            where = path + rule.get("fieldPath", "")
            errors.append(f"{where}: {rule.get('message', 'failed rule: ' + rule['rule'])}")
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                errors += cel_errors(child, value[name], f"{path}.{name}" if path else name)
        free = schema.get("additionalProperties")
        if isinstance(free, Mapping):
            for key, item in value.items():
                errors += cel_errors(free, item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += cel_errors(schema.get("items", {}), item, f"{path}[{index}]")
    return errors


def server_errors(obj: Mapping[str, Any]) -> list[str]:
    """What our model of the API server says about ``obj``: OpenAPI errors, else CEL errors."""
    schema = openapi_schema(obj["kind"])
    defaulted = apply_defaults(schema, copy.deepcopy(dict(obj)))
    errors = openapi_errors(schema, defaulted)
    # CEL rules only see well-typed values; with type errors the server reports those first.
    return errors or cel_errors(schema, defaulted, "")


def model_for(kind: str) -> type[GPUWorkloadSpec] | type[GPUNodePoolSpec]:
    return GPUWorkloadSpec if kind == "GPUWorkload" else GPUNodePoolSpec


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_object_is_refused_by_the_models(case: Invalid) -> None:
    with pytest.raises(ValidationError) as refused:
        model_for(case.kind).model_validate(case.spec())
    if case.message:
        assert case.message in str(refused.value)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_object_is_refused_by_the_crd_naming_the_field(case: Invalid) -> None:
    errors = server_errors(case.manifest())
    named = [e for e in errors if e.split(": ", 1)[0] == case.field]
    assert named, f"no error names {case.field}: {errors}"
    if case.message:
        assert any(case.message in e for e in named), errors


def example_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents += [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and d.get("apiVersion", "").startswith("rightsizer.io/")
        ]
    return documents


@pytest.mark.parametrize("document", example_documents(), ids=lambda d: d["metadata"]["name"])
def test_examples_are_valid_for_models_and_crd(document: dict[str, Any]) -> None:
    assert server_errors(document) == []
    model_for(document["kind"]).model_validate(document["spec"])


def test_examples_cover_inference_training_scale_to_zero_and_three_providers() -> None:
    workloads = [GPUWorkload.parse(d) for d in example_documents() if d["kind"] == "GPUWorkload"]
    pools = [GPUNodePool.parse(d) for d in example_documents() if d["kind"] == "GPUNodePool"]
    assert {w.spec.workload_type.value for w in workloads} == {"Inference", "Training"}
    assert any(w.spec.min_replicas == 0 for w in workloads)
    assert any(w.spec.idle_policy is not None for w in workloads)
    signals = {str(m.type) for w in workloads for m in w.spec.metrics or ()}
    assert signals >= {"Gpu", "Pods", "External"}, "vLLM and Triton examples scale on request signals"
    assert {p.spec.gpu_model for p in pools} >= {"NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"}
    assert {p.spec.provider.type.value for p in pools} >= {"kwok", "clusterapi"}


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        pytest.param("GPUWorkload", INFERENCE, id="minimal-inference"),
        pytest.param("GPUWorkload", TRAINING, id="minimal-training"),
        pytest.param("GPUNodePool", POOL, id="minimal-pool"),
        *(pytest.param(d["kind"], d["spec"], id=d["metadata"]["name"]) for d in example_documents()),
    ],
)
def test_crd_defaults_equal_model_defaults(kind: str, spec: dict[str, Any]) -> None:
    """What the API server stores after defaulting is exactly what the models assume."""
    schema = openapi_schema(kind)["properties"]["spec"]
    defaulted = apply_defaults(schema, copy.deepcopy(spec))
    assert defaulted == model_for(kind).model_validate(spec).to_wire()


# --- CEL and Python agree ------------------------------------------------------------------------

_absent = st.just(DELETE)
workload_specs = st.fixed_dictionaries(
    {
        "workloadType": st.sampled_from(["Inference", "Training"]),
        "minReplicas": st.integers(0, 4),
        "maxReplicas": _absent | st.integers(1, 4),
        "wakeUp": _absent | st.builds(lambda r: {**WAKE_UP, "replicas": r}, st.integers(1, 5)),
        "idlePolicy": _absent | st.just({"idleFor": "1h"}),
        "metric": st.fixed_dictionaries(
            {"source": st.sampled_from(["Prometheus", "DCGM"]), "query": _absent | st.just("up")}
        ),
        "protection": st.fixed_dictionaries(
            {"doNotDisrupt": st.booleans(), "allowConsolidation": _absent | st.booleans()}
        ),
        "pricing": _absent
        | st.fixed_dictionaries(
            {"pricePerGpuHour": _absent | st.just(2), "cpuCorePricePerHour": _absent | st.just(1)}
        ),
        "metrics": _absent
        | st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["Gpu", "Pods", "Object", "External"]),
                    "name": _absent | st.sampled_from(["waiting", "queue"]),
                    "query": _absent | st.just("sum(up)"),
                    "signal": _absent | st.just("Auto"),
                    "target": st.sampled_from(
                        [
                            {"type": "Utilization", "averageUtilization": 60},
                            {"type": "AverageValue", "averageValue": 5},
                            {"type": "Value", "value": 2},
                            {"type": "Value", "averageValue": 2},
                        ]
                    ),
                }
            ),
            min_size=1,
            max_size=3,
        ),
    }
)
pool_specs = st.fixed_dictionaries(
    {
        "pricePerGpuHour": _absent | st.just(3),
        "pricePerNodeHour": _absent | st.just(20),
        "nodeSelector": _absent | st.just({"rightsizer.io/pool": "a100"}),
        "minNodes": st.integers(0, 3),
        "maxNodes": _absent | st.integers(0, 3),
        "wattsPerGpu": _absent | st.sampled_from([0, 300, 400.5]),
        "idleWattsPerGpu": _absent | st.sampled_from([0, 60, 400.5, 500]),
        "provider": st.fixed_dictionaries(
            {
                "type": st.sampled_from(["kwok", "static", "clusterapi", "karpenter", "none"]),
                "machineDeployment": _absent | st.just({"namespace": "capi", "name": "gpu"}),
                "nodePool": _absent | st.just("gpu"),
                "nodeTemplate": _absent | st.just({"capacity": {"cpu": 64}}),
            }
        ),
        "disruption": st.fixed_dictionaries(
            {
                "budgets": st.lists(
                    st.fixed_dictionaries(
                        {"schedule": _absent | st.just("@daily"), "duration": _absent | st.just("1h")}
                    ),
                    max_size=2,
                )
            }
        ),
    }
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not DELETE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _agree(kind: str, base: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
    spec = _strip(merge(base, patch))
    try:
        model_for(kind).model_validate(spec)
        python_ok = True
    except ValidationError:
        python_ok = False
    errors = server_errors(
        {"apiVersion": "rightsizer.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    )
    assert python_ok == (not errors), f"python_ok={python_ok}, server errors={errors}, spec={spec}"


@settings(max_examples=300, deadline=None)
@given(workload_specs)
def test_cel_rules_and_python_rules_agree_on_workloads(patch: dict[str, Any]) -> None:
    _agree("GPUWorkload", {k: v for k, v in INFERENCE.items() if k != "maxReplicas"}, patch)


@settings(max_examples=150, deadline=None)
@given(pool_specs)
def test_cel_rules_and_python_rules_agree_on_pools(patch: dict[str, Any]) -> None:
    _agree("GPUNodePool", {k: v for k, v in POOL.items() if k != "pricePerGpuHour"}, patch)
