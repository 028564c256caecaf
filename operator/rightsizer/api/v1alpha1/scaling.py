"""How a GPUWorkload is measured and how fast it may be scaled: the GPU metric, the signals that
decide replicas (HPA's metrics shape), and the rate rules (HPA's behavior shape)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from rightsizer.api.v1alpha1.common import Duration, Number, Rule, SpecModel


class MetricSource(StrEnum):
    """Where utilisation is read: a Prometheus server, or the DCGM exporters scraped directly."""

    PROMETHEUS = "Prometheus"
    DCGM = "DCGM"


class GpuSignal(StrEnum):
    """DCGM field used as "how busy is this GPU". Ratios (PROF_*) are read as percent (x100). Auto:
    DCGM_FI_PROF_GR_ENGINE_ACTIVE where the GPU reports it (always for MIG instances, which report
    no DCGM_FI_DEV_GPU_UTIL), else DCGM_FI_DEV_GPU_UTIL, per GPU."""

    AUTO = "Auto"
    DCGM_FI_DEV_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
    DCGM_FI_PROF_GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    DCGM_FI_PROF_SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
    DCGM_FI_PROF_PIPE_TENSOR_ACTIVE = "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"


class MetricSpec(SpecModel):
    """How GPU utilisation of the workload's pods is measured."""

    source: MetricSource = Field(
        default=MetricSource.PROMETHEUS,
        description="Prometheus (query a Prometheus server) or DCGM (scrape the DCGM exporters directly).",
    )
    signal: GpuSignal = Field(
        default=GpuSignal.AUTO,
        description=(
            "DCGM field that measures activity. Auto reads DCGM_FI_PROF_GR_ENGINE_ACTIVE where a GPU "
            "reports it (always for MIG instances) and DCGM_FI_DEV_GPU_UTIL elsewhere; "
            "status.utilization.signal says which was read."
        ),
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "Custom PromQL instead of the signal (source Prometheus only). {{namespace}} and {{pods}} "
            "(a regex alternation of the workload's pod names) are substituted; the result must be one "
            "series per pod, labelled namespace and pod, in percent (0-100)."
        ),
    )
    window: Duration = Field(
        default=timedelta(minutes=5), description="Utilisation is averaged over this window, e.g. 5m."
    )

    rules = (
        Rule(
            cel="!has(self.query) || self.source == 'Prometheus'",
            message="spec.metric.query requires spec.metric.source Prometheus",
            check=lambda m: m.query is None or m.source is MetricSource.PROMETHEUS,
            field_path=".query",
            reason="FieldValueForbidden",
        ),
    )


class SelectPolicy(StrEnum):
    """Which policy applies when several allow different changes (HPA's selectPolicy)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class ScalingPolicyItem(SpecModel):
    """At most ``value`` pods, or ``value`` percent of the replicas at the start of the period, added
    or removed per period (an HPA scaling policy)."""

    type: PolicyType = Field(description="Pods (a number of pods) or Percent (of the current replicas).")
    value: int = Field(ge=1, le=100000, description="How many pods, or what percent, per period.")
    period_seconds: int = Field(
        ge=1, le=1800, description="Length of the period, in seconds; changes made within it count."
    )


class ScalingRules(SpecModel):
    """Limits on one direction of scaling, with HPA semantics (behavior.scaleUp / scaleDown)."""

    stabilization_window_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description=(
            "Recommendations of this many past seconds are considered and the most conservative one "
            "is used (highest when scaling down, lowest when scaling up), so the workload does not flap. "
            "Unset: 0 for scaleUp, 300 for scaleDown (HPA's)."
        ),
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX,
        description=(
            "Max: the policy allowing the largest change applies (default); Min: the smallest; "
            "Disabled: never scale in this direction."
        ),
    )
    policies: tuple[ScalingPolicyItem, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description=(
            "How fast replicas may change, as HPA's policies. Unset (and no maxStep/maxPercent): "
            "HPA's defaults, scaleUp the larger of 4 pods or 100% per 15 s, scaleDown 100% per 15 s."
        ),
    )
    max_step: int | None = Field(
        default=None,
        ge=1,
        description="Shorthand for one Pods policy: at most this many pods added or removed per period.",
    )
    max_percent: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Shorthand for one Percent policy: at most this percent of the replicas at the start of the "
            "period per periodSeconds. With maxStep too, the larger change is allowed (selectPolicy Max)."
        ),
    )
    period_seconds: int | None = Field(
        default=None,
        ge=1,
        le=1800,
        description="Period of the maxStep/maxPercent shorthand, in seconds (default 15).",
    )
    tolerance: Number | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "No change in this direction while observed/target is within this fraction of 1 (as HPA's "
            "behavior.scaleUp/scaleDown.tolerance; e.g. 0.05 scales up early, 0.5 scales down late); "
            "unset: behavior.tolerance."
        ),
    )


def _one_way_to_limit(direction: str, rules_of: Callable[[Behavior], ScalingRules]) -> Rule:
    def check(behavior: Behavior) -> bool:
        rules = rules_of(behavior)
        return rules.policies is None or (rules.max_step is None and rules.max_percent is None)

    return Rule(
        cel=(
            f"!has(self.{direction}) || !has(self.{direction}.policies) || "
            f"(!has(self.{direction}.maxStep) && !has(self.{direction}.maxPercent))"
        ),
        message=(
            f"spec.behavior.{direction}.policies cannot be combined with maxStep or maxPercent "
            "(a shorthand for one policy each): use one or the other"
        ),
        check=check,
        field_path=f".{direction}.policies",
    )


class Behavior(SpecModel):
    """Scaling speed and stabilisation (Inference only), as for a HorizontalPodAutoscaler."""

    scale_up: ScalingRules = Field(
        default=ScalingRules(),
        description="Scale-up limits; default (HPA's): immediately, the larger of 4 pods or 100% per 15 s.",
    )
    scale_down: ScalingRules = Field(
        default=ScalingRules(),
        description=(
            "Scale-down limits; default (HPA's): highest recommendation of the last 300 s, 100% per 15 s."
        ),
    )
    tolerance: Number = Field(
        default=Decimal("0.1"),
        ge=0,
        lt=1,
        description=(
            "No scaling while observed/target is within this fraction of 1 (default 0.1, i.e. 10%); "
            "scaleUp.tolerance or scaleDown.tolerance overrides it for one direction."
        ),
    )

    rules = (
        _one_way_to_limit("scaleUp", lambda b: b.scale_up),
        _one_way_to_limit("scaleDown", lambda b: b.scale_down),
    )


class MetricType(StrEnum):
    """Gpu: the pods' GPU utilisation; Pods: a per-pod PromQL query; Object and External: a PromQL
    query returning one number (a Service's request rate, a queue's length)."""

    GPU = "Gpu"
    PODS = "Pods"
    OBJECT = "Object"
    EXTERNAL = "External"


class TargetType(StrEnum):
    UTILIZATION = "Utilization"
    VALUE = "Value"
    AVERAGE_VALUE = "AverageValue"


class MetricTarget(SpecModel):
    """The value a metric should be held at, as HPA's MetricTarget."""

    type: TargetType = Field(
        description=(
            "Utilization (Gpu: averageUtilization percent), AverageValue (the value per replica) or "
            "Value (Object/External: the value itself)."
        )
    )
    average_utilization: Number | None = Field(
        default=None, gt=0, le=100, description="Target GPU utilisation, percent (type Utilization)."
    )
    average_value: Number | None = Field(
        default=None, gt=0, le=10**12, description="Target value per replica (type AverageValue)."
    )
    value: Number | None = Field(default=None, gt=0, le=10**12, description="Target value (type Value).")

    rules = (
        Rule(
            cel="(self.type == 'Utilization') == has(self.averageUtilization)",
            message="averageUtilization is set exactly when target.type is Utilization",
            check=lambda t: (t.type is TargetType.UTILIZATION) == (t.average_utilization is not None),
            field_path=".averageUtilization",
        ),
        Rule(
            cel="(self.type == 'AverageValue') == has(self.averageValue)",
            message="averageValue is set exactly when target.type is AverageValue",
            check=lambda t: (t.type is TargetType.AVERAGE_VALUE) == (t.average_value is not None),
            field_path=".averageValue",
        ),
        Rule(
            cel="(self.type == 'Value') == has(self.value)",
            message="value is set exactly when target.type is Value",
            check=lambda t: (t.type is TargetType.VALUE) == (t.value is not None),
            field_path=".value",
        ),
    )


def _target_fits(metric: ScalingMetric) -> bool:
    kind, target = metric.type, metric.target.type
    if kind is MetricType.GPU:
        return target is TargetType.UTILIZATION
    if kind is MetricType.PODS:
        return target is TargetType.AVERAGE_VALUE
    return target in (TargetType.VALUE, TargetType.AVERAGE_VALUE)


class ScalingMetric(SpecModel):
    """One signal replicas are scaled on, shaped like an HPA metric; the largest count wins."""

    type: MetricType = Field(description="Gpu, Pods, Object or External.")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description=(
            "Required for Pods, Object and External: names the metric in reasons, status and backtests, "
            "e.g. requestsWaiting."
        ),
    )
    signal: GpuSignal | None = Field(
        default=None, description="Gpu only: the DCGM field; unset: spec.metric.signal."
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "Pods, Object and External: PromQL read from Prometheus; {{namespace}} and {{pods}} (a regex "
            "alternation of the workload's pod names) are substituted. Pods: one series per pod, "
            "labelled namespace and pod (e.g. avg by (namespace, pod) "
            '(vllm:num_requests_waiting{namespace="{{namespace}}"})); '
            "Object and External: one number."
        ),
    )
    target: MetricTarget = Field(description="The value to hold the metric at.")

    rules = (
        Rule(
            cel=(
                "self.type == 'Gpu' ? self.target.type == 'Utilization' : self.type == 'Pods' ? "
                "self.target.type == 'AverageValue' : self.target.type != 'Utilization'"
            ),
            message=(
                "target.type must be Utilization for a Gpu metric, AverageValue for Pods, "
                "Value or AverageValue for Object and External"
            ),
            check=_target_fits,
            field_path=".target.type",
        ),
        Rule(
            cel="self.type == 'Gpu' || (has(self.name) && has(self.query))",
            message="name and query are required for Pods, Object and External metrics",
            check=lambda m: m.type is MetricType.GPU or (m.name is not None and m.query is not None),
            field_path=".query",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.type != 'Gpu' || !has(self.query)",
            message="query is for Pods, Object and External metrics; a Gpu metric uses spec.metric",
            check=lambda m: m.type is not MetricType.GPU or m.query is None,
            field_path=".query",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="self.type == 'Gpu' || !has(self.signal)",
            message="signal is for a Gpu metric only",
            check=lambda m: m.type is MetricType.GPU or m.signal is None,
            field_path=".signal",
            reason="FieldValueForbidden",
        ),
    )
