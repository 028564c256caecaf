"""The local cluster's Karpenter: priced GPU instance types for its kwok provider, one NodePool per shape.

Karpenter's kwok cloud provider launches fake nodes of the instance types in a JSON file
(``INSTANCE_TYPES_FILE_PATH``); kwok's controller then runs the pods the real scheduler puts on them.

    python -m rightsizer.devcluster.karpenter_fleet instance-types   # the JSON file
    python -m rightsizer.devcluster.karpenter_fleet nodepools        # KWOKNodeClass + NodePools (YAML List)

Prices are on-demand and spot dollars per hour of the AWS instance each shape is named after.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from rightsizer.adapters.nodepools.kwok_nodes import (
    A100_80GB_X8,
    CPU_32,
    GPU_RESOURCE,
    H100_X8,
    L4_X4,
    L4_X8,
    NodeShape,
    gpu_labels,
)

ZONES = ("us-east-1a", "us-east-1b")
CAPACITY_TYPE = "karpenter.sh/capacity-type"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
NODE_CLASS = "default"
NODE_CLASS_REF = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": NODE_CLASS}


@dataclass(frozen=True)
class PricedShape:
    """An instance type Karpenter may launch, and the NodePool that launches only it."""

    pool: str
    shape: NodeShape
    on_demand: float
    spot: float


SHAPES: tuple[PricedShape, ...] = (
    PricedShape("gpu-a100-x8", A100_80GB_X8, 40.97, 16.39),
    PricedShape("gpu-h100-x8", H100_X8, 98.32, 39.33),
    PricedShape("gpu-l4-x4", L4_X4, 4.60, 1.84),
    PricedShape("gpu-l4-x8", L4_X8, 13.35, 5.34),
    PricedShape("cpu", CPU_32, 1.536, 0.61),
)


def instance_types(shapes: Iterable[PricedShape] = SHAPES) -> list[dict[str, Any]]:
    """The instance-types file: every shape offered on-demand and spot in every zone."""
    types = []
    for priced in shapes:
        shape = priced.shape
        resources = {
            "cpu": str(shape.cpu),
            "memory": f"{shape.memory_gi}Gi",
            "pods": str(shape.max_pods),
            "ephemeral-storage": "500Gi",
        }
        if shape.gpus:
            resources[GPU_RESOURCE] = str(shape.gpus)
        offerings = [
            {
                "Price": price,
                "Available": True,
                "Requirements": [
                    {"key": CAPACITY_TYPE, "operator": "In", "values": [capacity]},
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
                ],
            }
            for zone in ZONES
            for capacity, price in (("on-demand", priced.on_demand), ("spot", priced.spot))
        ]
        types.append(
            {
                "name": shape.instance_type,
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": resources,
                "offerings": offerings,
            }
        )
    return types


def node_class() -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.kwok.sh/v1alpha1",
        "kind": "KWOKNodeClass",
        "metadata": {"name": NODE_CLASS},
    }


def node_pool(
    priced: PricedShape,
    *,
    name: str | None = None,
    consolidation_policy: str = "WhenEmpty",
    consolidate_after: str = "30s",
    budget: str = "10%",
    capacity_types: tuple[str, ...] = ("on-demand",),
    taints: Iterable[Mapping[str, str]] = (),
    labels: Mapping[str, str] | None = None,
    gpu_limit: int = 64,
) -> dict[str, Any]:
    """A NodePool that launches only `priced`'s instance type. `taints` keep pods that do not
    tolerate them off its nodes (and Karpenter from launching nodes for them)."""
    template_spec: dict[str, Any] = {
        "nodeClassRef": dict(NODE_CLASS_REF),
        "requirements": [
            {
                "key": "node.kubernetes.io/instance-type",
                "operator": "In",
                "values": [priced.shape.instance_type],
            },
            {"key": CAPACITY_TYPE, "operator": "In", "values": list(capacity_types)},
        ],
        "expireAfter": "Never",
    }
    if taints:
        template_spec["taints"] = [dict(t) for t in taints]
    limits = {GPU_RESOURCE: str(gpu_limit)} if priced.shape.gpus else {"cpu": "1000"}
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name or priced.pool},
        "spec": {
            "template": {
                "metadata": {"labels": {**gpu_labels(priced.shape), **(labels or {})}},
                "spec": template_spec,
            },
            "disruption": {
                "consolidationPolicy": consolidation_policy,
                "consolidateAfter": consolidate_after,
                "budgets": [{"nodes": budget}],
            },
            "limits": limits,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("instance-types", "nodepools"))
    parser.add_argument(
        "--consolidation-policy",
        choices=("WhenEmpty", "WhenEmptyOrUnderutilized"),
        default="WhenEmpty",
        help="the NodePools' disruption.consolidationPolicy (WhenEmpty: GPU Rightsizer decides the rest)",
    )
    args = parser.parse_args(argv)
    if args.what == "instance-types":
        json.dump(instance_types(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    pools = [node_pool(p, consolidation_policy=args.consolidation_policy) for p in SHAPES]
    yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [node_class(), *pools]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
