"""A finished consolidation pass, said as the plan says it: the actions in plan order, and for every
node kept, why (with what would free it when its GPUs sit idle).

Apart from the methods so that what a pass decided and how it is told to people and the executor
can each change without the other.
"""

from __future__ import annotations

from decimal import Decimal

from rightsizer.core.consolidation_state import ConsolidationState
from rightsizer.core.consolidation_types import Action, Recommendation, Skip
from rightsizer.core.node_replacement import replacement_name


def build_actions(state: ConsolidationState) -> list[Action]:
    """Per disrupted node, in plan order: (replaceNode,) cordon, evict each pod to its final node,
    removeNode. DaemonSet and static pods go with the node and are not evicted."""
    actions: list[Action] = []
    for i, reason in state.disruptions:
        name = state.nodes[i].name
        pool = state.pool[i]
        pool_name = pool.name if pool is not None else None
        choice = state.replaced.get(i)
        if choice is not None:
            actions.append(
                Action(
                    "replaceNode",
                    name,
                    to_node=replacement_name(name),
                    reason=reason,
                    pool=pool_name,
                    instance_type=choice.instance_type,
                    price_per_hour=choice.price_per_node_hour,
                )
            )
        actions.append(Action("cordon", name, reason=reason, pool=pool_name))
        for pod in sorted(state.movable[i], key=state.size_key):
            if choice is not None:
                target = replacement_name(name)
                why = f"replace {name} by {target}"
            else:
                target = state.nodes[state.location[pod.key]].name
                why = f"drain {name}: fits on {target}"
            actions.append(Action("evict", name, pod=pod.key, to_node=target, reason=why, pool=pool_name))
        actions.append(Action("removeNode", name, reason=reason, pool=pool_name))
    return actions


def explain(state: ConsolidationState) -> tuple[list[Skip], list[Recommendation]]:
    """Why each node that stays was kept (and, in pools, which pods held it), and what to do about
    nodes whose GPUs are allocated but idle or that only CPU pods without room elsewhere hold."""
    skipped: list[Skip] = []
    recommendations: list[Recommendation] = []
    for i, node in enumerate(state.nodes):
        if i in state.removed:
            continue
        reason = state.node_reason.get(i, "kept")
        skipped.append(Skip(node.name, None, reason))
        if state.pool[i] is not None:
            for pod, disposition in state.blockers[i]:
                skipped.append(Skip(node.name, pod.key, disposition.reason))
        if node.gpus() <= 0:
            continue
        gpu_pods = [p for p in state.bound[i] if state.gpus(p) > 0]
        if state.node_idle(i):
            worst = max(state.activity[p.key] for p in gpu_pods)
            allocated = sum((state.gpus(p) for p in gpu_pods), Decimal(0))
            recommendations.append(
                Recommendation(
                    node.name,
                    f"{allocated:f} GPU(s) allocated but idle (activity <= {worst:f}%); "
                    f"kept because {reason}. Scale the idle workloads down or allow their disruption "
                    "to free the node.",
                    state.price[i],
                    tuple(p.key for p in gpu_pods),
                )
            )
        elif not gpu_pods and state.movable[i] and "fits on no remaining node" in reason:
            recommendations.append(
                Recommendation(
                    node.name,
                    f"GPU node held only by CPU pods that no CPU node has room for ({reason}); "
                    "add CPU capacity to free it.",
                    state.price[i],
                    tuple(p.key for p in state.movable[i]),
                )
            )
    return skipped, recommendations
