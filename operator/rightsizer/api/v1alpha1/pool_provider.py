"""Where a GPUNodePool's nodes come from and how they are added and removed: its provider."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from rightsizer.api.v1alpha1.common import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    Quantity,
    Rule,
    SpecModel,
)

LabelValue = Annotated[str, Field(max_length=63)]
Labels = Annotated[dict[str, LabelValue], Field(max_length=64)]


class ProviderType(StrEnum):
    """How nodes are added and removed. kwok / static: the operator creates Node objects from
    nodeTemplate and deletes them itself (fake or self-registered nodes); clusterapi: scales a
    MachineDeployment; karpenter: deletes the drained node's NodeClaim (Karpenter removes the node);
    none: cordon and drain only, the platform's autoscaler removes the empty node."""

    KWOK = "kwok"
    STATIC = "static"
    CLUSTERAPI = "clusterapi"
    KARPENTER = "karpenter"
    NONE = "none"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class ObjectReference(SpecModel):
    """A namespaced object."""

    namespace: Annotated[str, Field(min_length=1, max_length=63), DNS_LABEL] = Field(
        description="Namespace of the object."
    )
    name: Annotated[str, Field(min_length=1, max_length=253), DNS_SUBDOMAIN] = Field(
        description="Name of the object."
    )


class Taint(SpecModel):
    key: str = Field(min_length=1, max_length=317, description="Taint key.")
    value: str | None = Field(default=None, max_length=63, description="Taint value.")
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")


class NodeTemplate(SpecModel):
    """What a node created by the kwok or static provider looks like, beyond the pool's
    nodeSelector labels, gpuModel and gpusPerNode (which are always applied)."""

    labels: Labels = Field(
        default_factory=dict, description="Extra labels, e.g. topology.kubernetes.io/zone."
    )
    capacity: Annotated[dict[str, Quantity], Field(max_length=32)] = Field(
        default_factory=dict,
        description=(
            "Capacity besides GPUs, e.g. {cpu: 64, memory: 512Gi, pods: 110}; also used as allocatable."
        ),
    )
    taints: tuple[Taint, ...] = Field(default=(), max_length=32, description="Taints of created nodes.")


class NodePoolProvider(SpecModel):
    """Which system owns the pool's machines, and the object to drive in it."""

    type: ProviderType = Field(
        default=ProviderType.NONE, description="kwok, static, clusterapi, karpenter or none (default)."
    )
    machine_deployment: ObjectReference | None = Field(
        default=None, description="clusterapi only: the MachineDeployment whose replicas are scaled."
    )
    node_pool: Annotated[str, Field(min_length=1, max_length=253), DNS_SUBDOMAIN] | None = Field(
        default=None, description="karpenter only: the Karpenter NodePool whose nodes these are."
    )
    node_template: NodeTemplate | None = Field(
        default=None, description="kwok and static only: how to create a node on scale-up."
    )

    rules = (
        Rule(
            cel="(self.type == 'clusterapi') == has(self.machineDeployment)",
            message="spec.provider.machineDeployment is required for, and only allowed with, type clusterapi",
            check=lambda p: (p.type is ProviderType.CLUSTERAPI) == (p.machine_deployment is not None),
            field_path=".machineDeployment",
        ),
        Rule(
            cel="(self.type == 'karpenter') == has(self.nodePool)",
            message="spec.provider.nodePool is required for, and only allowed with, type karpenter",
            check=lambda p: (p.type is ProviderType.KARPENTER) == (p.node_pool is not None),
            field_path=".nodePool",
        ),
        Rule(
            cel="!has(self.nodeTemplate) || self.type == 'kwok' || self.type == 'static'",
            message="spec.provider.nodeTemplate is only allowed with type kwok or static",
            check=lambda p: p.node_template is None or p.type in (ProviderType.KWOK, ProviderType.STATIC),
            field_path=".nodeTemplate",
            reason="FieldValueForbidden",
        ),
    )
