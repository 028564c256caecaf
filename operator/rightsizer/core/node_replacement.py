"""Whether a node's pods would all fit on a cheaper replacement type of its pool.

A replacement does not exist yet, so it is modelled on the node it replaces: the type's GPUs, the
node's CPU, memory and other resources scaled with the GPU count, and the labels a node of that type
would carry.
Apart from the consolidation methods because it is a fit test of its own, on one imagined node,
not a placement in the simulation the drains share.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from rightsizer.core.binpack import CPU, PODS, pod_constraints
from rightsizer.core.consolidation_state import ConsolidationState
from rightsizer.core.pools import PoolPolicy, ReplacementType
from rightsizer.core.snapshot import GPU_PRODUCT_LABEL, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, is_gpu_resource

GPU_COUNT_LABEL = "nvidia.com/gpu.count"


def replacement_name(node: str) -> str:
    return f"{node}-replacement"


def cheapest_replacement(state: ConsolidationState, i: int, pool: PoolPolicy) -> ReplacementType | None:
    """The cheapest of the pool's replacement types, cheaper than node ``i``, that its pods fit on."""
    for choice in sorted(pool.replacement_types, key=lambda r: (r.price_per_node_hour, r.instance_type)):
        if choice.price_per_node_hour >= state.price[i]:
            break
        if _fits_replacement(state, i, choice):
            return choice
    return None


def _fits_replacement(state: ConsolidationState, i: int, choice: ReplacementType) -> bool:
    node = state.nodes[i]
    gpus_now = node.gpus()
    allocatable: dict[str, Decimal] = {}
    for name, value in node.allocatable.items():
        if is_gpu_resource(name):
            continue
        if name == PODS:
            allocatable[name] = value
        elif gpus_now > 0:
            # Cloud GPU families scale host CPU/memory with the GPU count.
            scaled = value * choice.gpus_per_node / gpus_now
            allocatable[name] = scaled.to_integral_value(rounding=ROUND_FLOOR) if name != CPU else scaled
        else:
            return False
    if choice.gpus_per_node:
        allocatable["nvidia.com/gpu"] = Decimal(choice.gpus_per_node)
    labels = dict(node.labels)
    labels[INSTANCE_TYPE_LABEL] = choice.instance_type
    labels[HOSTNAME_LABEL] = replacement_name(node.name)
    labels[GPU_COUNT_LABEL] = str(choice.gpus_per_node)
    if choice.gpu_model:
        labels[GPU_PRODUCT_LABEL] = choice.gpu_model
    elif choice.gpus_per_node == 0:
        labels.pop(GPU_PRODUCT_LABEL, None)
    name = labels[HOSTNAME_LABEL]
    free = state.space.capacity(allocatable)
    moving = list(state.movable[i])
    moving += [
        p
        for p in state.stays[i]
        if p.is_daemon and pod_constraints(p).admits(name, labels, node.taints)  # recreated there
    ]
    for pod in moving:
        if pod.key in state.constraints and not state.constraints[pod.key].admits(name, labels, node.taints):
            return False
        for d, amount in state.request[pod.key]:
            free[d] -= amount
    return all(v >= 0 for v in free)
