"""GPUWorkload: one GPU training or inference workload the operator right-sizes and prices."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from rightsizer.api.v1alpha1.common import (
    AGE_COLUMN,
    DNS_SUBDOMAIN,
    ApiObject,
    Currency,
    Duration,
    Money,
    Number,
    ObjectMeta,
    Price,
    PrinterColumn,
    ResourceInfo,
    Rule,
    SpecModel,
)
from rightsizer.api.v1alpha1.scaling import (
    Behavior,
    MetricSpec,
    MetricType,
    ScalingMetric,
)
from rightsizer.api.v1alpha1.workload_status import GPUWorkloadStatus

# --- enums ----------------------------------------------------------------------------------------


class WorkloadType(StrEnum):
    """Inference is scaled on utilisation (and may scale to zero); Training is never rescaled,
    only watched for idleness."""

    INFERENCE = "Inference"
    TRAINING = "Training"


class Mode(StrEnum):
    """Enforce acts on the target; Recommend only writes status, events and annotations."""

    ENFORCE = "Enforce"
    RECOMMEND = "Recommend"


class IdleAction(StrEnum):
    """What to do with a training workload idle for idleFor: Recommend (status and event only),
    Annotate (also annotate the target and its pods), Suspend (scale the target to 0, or set
    spec.suspend when the target has it)."""

    RECOMMEND = "Recommend"
    ANNOTATE = "Annotate"
    SUSPEND = "Suspend"


class WorkloadConditionType(StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    SCALING = "Scaling"
    CONFLICT = "Conflict"


# --- spec -----------------------------------------------------------------------------------------


class TargetRef(SpecModel):
    """The object whose replicas are managed: anything with a /scale subresource (Deployment,
    StatefulSet, or a custom job resource), in the GPUWorkload's namespace."""

    api_version: str = Field(
        min_length=1,
        max_length=253,
        description="API version of the target, e.g. apps/v1 or kubeflow.org/v1.",
    )
    kind: str = Field(min_length=1, max_length=63, description="Kind of the target, e.g. Deployment.")
    name: Annotated[str, Field(min_length=1, max_length=253), DNS_SUBDOMAIN] = Field(
        description="Name of the target in the GPUWorkload's namespace."
    )


class WakeUp(SpecModel):
    """The signal that brings a workload scaled to zero back, and when it may go to zero."""

    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL returning one number, e.g. a request rate; {{namespace}} is substituted. "
            "Above threshold the workload wakes up."
        ),
    )
    threshold: Money = Field(
        default=Decimal(0), description="Wake up when the query's value is above this (default 0)."
    )
    replicas: int = Field(default=1, ge=1, description="Replicas to start when waking up.")
    cooldown: Duration = Field(
        default=timedelta(minutes=5),
        description=(
            "Scale to zero only after utilisation is below target and the query at or below "
            "threshold for this long."
        ),
    )


class IdlePolicy(SpecModel):
    """When a training workload counts as idle and what happens then."""

    threshold_percent: Number = Field(
        default=Decimal(5),
        gt=0,
        le=100,
        description="Every replica below this utilisation (percent) counts as idle.",
    )
    idle_for: Duration = Field(
        default=timedelta(minutes=30), description="Act after the workload has been idle this long, e.g. 30m."
    )
    action: IdleAction = Field(
        default=IdleAction.RECOMMEND,
        description="Recommend, Annotate or Suspend (scale to 0 or set spec.suspend).",
    )


class WorkloadPricing(SpecModel):
    """Prices for this workload that override those of its GPUNodePool (e.g. a negotiated rate)."""

    price_per_gpu_hour: Price | None = Field(default=None, description="Price of one GPU for one hour.")
    cpu_core_price_per_hour: Price | None = Field(
        default=None, description="Price of one CPU core for one hour."
    )
    currency: Currency | None = Field(default=None, description="Currency of these prices, e.g. USD.")

    rules = (
        Rule(
            cel="has(self.pricePerGpuHour) || has(self.cpuCorePricePerHour)",
            message="spec.pricing must set pricePerGpuHour or cpuCorePricePerHour",
            check=lambda p: p.price_per_gpu_hour is not None or p.cpu_core_price_per_hour is not None,
            reason="FieldValueRequired",
        ),
    )


class Protection(SpecModel):
    """What the operator may never do to this workload's pods."""

    do_not_disrupt: bool = Field(
        default=False, description="Never evict, move or suspend this workload's pods."
    )
    allow_consolidation: bool | None = Field(
        default=None,
        description=(
            "May pods be evicted to pack nodes? Unset: yes for Inference, no for Training "
            "(a moved training pod loses its progress since the last checkpoint)."
        ),
    )
    startup_grace_period: Duration | None = Field(
        default=None,
        description=(
            "Pods Ready for less than this are never moved; unset: the GPUNodePool's startupGracePeriod."
        ),
    )

    rules = (
        Rule(
            cel="!(self.doNotDisrupt && has(self.allowConsolidation) && self.allowConsolidation)",
            message=(
                "spec.protection.allowConsolidation cannot be true when spec.protection.doNotDisrupt is true"
            ),
            check=lambda p: not (p.do_not_disrupt and p.allow_consolidation),
            field_path=".allowConsolidation",
        ),
    )


def _unique_names(metrics: tuple[ScalingMetric, ...]) -> bool:
    names = [m.name for m in metrics if m.name is not None]
    return len(names) == len(set(names))


class GPUWorkloadSpec(SpecModel):
    """What the workload is, how to measure it, and the limits within which it is right-sized."""

    target_ref: TargetRef = Field(description="The scalable object that runs the GPU pods.")
    workload_type: WorkloadType = Field(
        description="Inference (scaled on utilisation, may scale to zero) or Training (watched for idleness)."
    )
    mode: Mode = Field(
        default=Mode.RECOMMEND,
        description="Recommend (default: change nothing but status, events, annotations) or Enforce.",
    )
    metric: MetricSpec = Field(default=MetricSpec(), description="Where and how utilisation is measured.")
    target_utilization: Number = Field(
        default=Decimal(60),
        gt=0,
        le=100,
        description="Average GPU utilisation (percent, 0 < t <= 100) to keep an Inference workload at.",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description="Fewest replicas; 0 lets an Inference workload scale to zero (needs wakeUp).",
    )
    max_replicas: int | None = Field(default=None, ge=1, description="Most replicas; required for Inference.")
    wake_up: WakeUp | None = Field(
        default=None, description="Required with minReplicas 0: when to come back from zero."
    )
    metrics: tuple[ScalingMetric, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description=(
            "Inference only: the signals replicas are scaled on, as an HPA's metrics; the largest count "
            "wins, and one that cannot be read is left out of a scale-up and blocks a scale-down. "
            "Unset: one Gpu metric at targetUtilization. With metrics set, targetUtilization is not used."
        ),
    )
    behavior: Behavior = Field(default=Behavior(), description="Scaling speed and stabilisation.")
    initial_readiness_delay_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description=(
            "A pod Ready for less than this many seconds counts neither as busy nor as idle: it is "
            "still starting (a model still loading reads 0%), as HPA's initial readiness delay."
        ),
    )
    idle_policy: IdlePolicy | None = Field(
        default=None, description="Training only: when the workload is idle and what to do about it."
    )
    pricing: WorkloadPricing | None = Field(
        default=None, description="Overrides of the GPUNodePool's prices for this workload."
    )
    protection: Protection = Field(
        default=Protection(), description="Disruptions the operator must not cause."
    )

    rules = (
        Rule(
            cel="self.workloadType != 'Inference' || has(self.maxReplicas)",
            message="spec.maxReplicas is required when spec.workloadType is Inference",
            check=lambda s: s.workload_type is not WorkloadType.INFERENCE or s.max_replicas is not None,
            field_path=".maxReplicas",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="spec.minReplicas must be <= spec.maxReplicas",
            check=lambda s: s.max_replicas is None or s.min_replicas <= s.max_replicas,
            field_path=".minReplicas",
        ),
        Rule(
            cel="self.minReplicas > 0 || self.workloadType == 'Inference'",
            message="spec.minReplicas may be 0 only when spec.workloadType is Inference",
            check=lambda s: s.min_replicas > 0 or s.workload_type is WorkloadType.INFERENCE,
            field_path=".minReplicas",
        ),
        Rule(
            cel="self.minReplicas > 0 || has(self.wakeUp)",
            message="spec.wakeUp is required when spec.minReplicas is 0",
            check=lambda s: s.min_replicas > 0 or s.wake_up is not None,
            field_path=".wakeUp",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.wakeUp) || !has(self.maxReplicas) || self.wakeUp.replicas <= self.maxReplicas",
            message="spec.wakeUp.replicas must be <= spec.maxReplicas",
            check=lambda s: (
                s.wake_up is None or s.max_replicas is None or s.wake_up.replicas <= s.max_replicas
            ),
            field_path=".wakeUp.replicas",
        ),
        Rule(
            cel="!has(self.metrics) || self.workloadType == 'Inference'",
            message="spec.metrics applies only when spec.workloadType is Inference",
            check=lambda s: s.metrics is None or s.workload_type is WorkloadType.INFERENCE,
            field_path=".metrics",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="!has(self.metrics) || self.metrics.filter(m, m.type == 'Gpu').size() <= 1",
            message="spec.metrics may hold at most one Gpu metric",
            check=lambda s: s.metrics is None or sum(m.type is MetricType.GPU for m in s.metrics) <= 1,
            field_path=".metrics",
        ),
        Rule(
            cel=(
                "!has(self.metrics) || self.metrics.filter(m, has(m.name)).map(m, m.name).all(n, "
                "self.metrics.exists_one(m, has(m.name) && m.name == n))"
            ),
            message="spec.metrics names must be unique",
            check=lambda s: s.metrics is None or _unique_names(s.metrics),
            field_path=".metrics",
        ),
        Rule(
            cel="!has(self.idlePolicy) || self.workloadType == 'Training'",
            message="spec.idlePolicy applies only when spec.workloadType is Training",
            check=lambda s: s.idle_policy is None or s.workload_type is WorkloadType.TRAINING,
            field_path=".idlePolicy",
            reason="FieldValueForbidden",
        ),
    )

    @property
    def consolidation_allowed(self) -> bool:
        """May the consolidator evict these pods? Explicit protection wins over the type default."""
        if self.protection.do_not_disrupt:
            return False
        if self.protection.allow_consolidation is not None:
            return self.protection.allow_consolidation
        return self.workload_type is WorkloadType.INFERENCE


class GPUWorkload(ApiObject):
    """A GPU training or inference workload that GPU Rightsizer right-sizes from real GPU
    activity and puts the cost on."""

    resource = ResourceInfo(
        kind="GPUWorkload",
        plural="gpuworkloads",
        singular="gpuworkload",
        short_names=("gw",),
        namespaced=True,
        printer_columns=(
            PrinterColumn("Type", "string", ".spec.workloadType", "Inference or Training."),
            PrinterColumn("Target", "string", ".status.target.kind", "The target's kind."),
            PrinterColumn(
                "Can", "string", ".status.target.actions", "Scale, Suspend, Scale,Suspend or RecommendOnly."
            ),
            PrinterColumn("Mode", "string", ".spec.mode", "Enforce or Recommend."),
            PrinterColumn(
                "Util%", "number", ".status.utilization.aggregate", "Average GPU utilisation, percent."
            ),
            PrinterColumn("Replicas", "integer", ".status.replicas.current", "Current replicas."),
            PrinterColumn("Desired", "integer", ".status.replicas.desired", "Replicas the operator wants."),
            PrinterColumn("$/h", "number", ".status.cost.perHour", "Cost per hour."),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["rightsizer.io/v1alpha1"] = "rightsizer.io/v1alpha1"
    kind: Literal["GPUWorkload"] = "GPUWorkload"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: GPUWorkloadSpec
    status: GPUWorkloadStatus | None = None
