"""GPUWorkload's status: what the operator observed, decided and priced, written by it alone."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from rightsizer.api.v1alpha1.common import (
    CONDITIONS_LIST,
    Condition,
    Number,
    StatusModel,
)


class ReplicaUtilization(StatusModel):
    """Utilisation of one replica's GPUs."""

    pod: str = Field(description="Pod name.")
    percent: Number = Field(description="Average utilisation of the pod's GPUs over the window, percent.")
    peak_percent: Number | None = Field(
        default=None, description="Utilisation of the pod's busiest GPU, percent: idle only when this is."
    )
    memory_used_mib: int | None = Field(
        default=None, alias="memoryUsedMiB", description="Peak GPU memory used, MiB."
    )


class Utilization(StatusModel):
    """Observed GPU utilisation."""

    aggregate: Number | None = Field(default=None, description="Average over all ready replicas, percent.")
    per_replica: tuple[ReplicaUtilization, ...] = Field(default=(), description="Per ready replica.")
    peak_memory_used_mib: int | None = Field(
        default=None,
        alias="peakMemoryUsedMiB",
        description="Highest GPU memory used by any replica over the window, MiB.",
    )
    sampled_at: datetime | None = Field(default=None, description="Time of the newest sample used.")
    signal: str | None = Field(
        default=None,
        description="DCGM field read (under Auto, the one the GPUs report; joined by + when they differ).",
    )
    shared_gpu: bool = Field(
        default=False,
        description="SharedGpu: a replica's GPU is shared with other pods (time-slicing, MPS), so its "
        "numbers are the device's; the workload is never scaled down on them alone.",
    )


class ReplicaCounts(StatusModel):
    current: int = Field(description="Replicas the target has now.")
    desired: int = Field(description="Replicas the operator wants (applied in Enforce mode).")


class Decision(StatusModel):
    """The operator's last decision about this workload and why."""

    action: str = Field(
        description="What was decided, e.g. ScaleUp, ScaleDown, Hold, ScaleToZero, WakeUp, Suspend."
    )
    replicas: int | None = Field(default=None, description="Replica count decided, where it applies.")
    reason: str = Field(description="Why, with the numbers that led to it.")
    time: datetime = Field(description="When the decision was made.")


class Recommendation(StatusModel):
    """Right-sizing advice from observed utilisation and memory."""

    replicas: int | None = Field(default=None, description="Recommended replica count.")
    gpus_per_replica: int | None = Field(default=None, description="Recommended GPUs per replica.")
    gpu_model: str | None = Field(default=None, description="A smaller GPU model that would fit.")
    mig_profile: str | None = Field(default=None, description="A MIG profile that would fit, e.g. 3g.40gb.")
    reason: str = Field(default="", description="Why, with the numbers that led to it.")


class CostStatus(StatusModel):
    """What the workload costs, by the model in the GPUNodePool (or spec.pricing)."""

    currency: str = Field(description="Currency of the amounts.")
    per_hour: Number = Field(description="Cost per hour now: hardware + energy x PUE + overhead.")
    to_date: Number = Field(description="Cost accumulated since `since`.")
    idle_per_hour: Number | None = Field(
        default=None, description="Part of perHour paying for idle GPU time."
    )
    gpu_efficiency: Number | None = Field(
        default=None, description="GPU time used / GPU time paid for, 0..1 (as OpenCost's gpuEfficiency)."
    )
    since: datetime | None = Field(default=None, description="Start of accumulation.")
    last_accrued_at: datetime | None = Field(
        default=None, description="When toDate was last brought up to date."
    )


class TargetStatus(StatusModel):
    """The target as the operator reaches it."""

    kind: str = Field(description="The target's kind, e.g. RayCluster.")
    actions: str = Field(
        description="What the operator can do with it: Scale (a replica count it can set), Suspend "
        "(a suspend field), both as Scale,Suspend, or RecommendOnly when it has neither."
    )


class GPUWorkloadStatus(StatusModel):
    """What the operator observed and decided."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last acted on.")
    conditions: tuple[Condition, ...] = Field(
        default=(),
        description="Ready, MetricsAvailable, Scaling, Conflict.",
        json_schema_extra=CONDITIONS_LIST,
    )
    utilization: Utilization | None = Field(default=None, description="Observed GPU utilisation.")
    replicas: ReplicaCounts | None = Field(default=None, description="Current and desired replicas.")
    last_decision: Decision | None = Field(default=None, description="The last decision and why.")
    recommendations: Recommendation | None = Field(default=None, description="Right-sizing advice.")
    cost: CostStatus | None = Field(default=None, description="Cost per hour and to date.")
    idle_since: datetime | None = Field(default=None, description="Since when the workload has been idle.")
    target: TargetStatus | None = Field(
        default=None, description="The target's kind and what the operator can do with it."
    )
