"""Adding nodes to a GPUNodePool for Pending GPU pods that a new node of the pool would take.

Apart from the pool pass because this is where a provider is asked for more nodes, and its fit test
is of a node that does not exist yet rather than of the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rightsizer.adapters.cluster_snapshot import ClusterState
from rightsizer.adapters.nodepools.base import NodePoolProvider, ProviderError
from rightsizer.core.matching import hard_taints, node_term_matches, tolerates
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot import Node, Pod, Taint
from rightsizer.runtime.events import Event


@dataclass(frozen=True)
class ScaleUp:
    """What one attempt did: what to tell, and whether the provider took an order for nodes."""

    events: tuple[Event, ...] = ()
    ordered: bool = False


def scale_up(
    state: ClusterState,
    pool: PoolPolicy,
    members: Sequence[Node],
    provider_of: Callable[[str], NodePoolProvider | None],
) -> ScaleUp:
    """Order the nodes the pool's Pending GPU pods need beyond those serving or coming, within
    maxNodes; ``provider_of`` is only asked when some are needed."""
    gpus_per_node = pool.gpus_per_node or 0
    if gpus_per_node <= 0:
        return ScaleUp()
    waiting = state.unschedulable
    labels, taints = dict(pool.new_node.labels), pool.new_node.taints
    demand = [
        pod.gpus()
        for pod in state.snapshot.pods
        if pod.key in waiting and 0 < pod.gpus() <= gpus_per_node and _would_fit(pod, labels, taints)
    ]
    # A Pending pod may still be flagged unschedulable though a node that registered since has room
    # for it (the scheduler has not placed it yet): that room takes it, no new machine.
    serving_nodes = [n for n in members if n.gpus() > 0 and not n.deleting and not n.unschedulable]
    wanted = _bins(
        _beyond_free_room(demand, [_free_gpus(state, n) for n in serving_nodes]), Decimal(gpus_per_node)
    )
    if wanted <= 0:
        return ScaleUp()
    provider = provider_of(pool.name)
    if provider is None or not provider.can_scale_up:
        return ScaleUp()
    try:
        # Level-based: machines already ordered or still starting (not yet a node that advertises
        # its GPUs) will take these pods, so the same Pending pods never order machines twice.
        ordered = provider.desired_nodes()
    except ProviderError as exc:
        return ScaleUp((Event("Warning", "ScaleUpFailed", f"{exc}; ordering nothing until it can be read"),))
    serving = sum(1 for n in members if n.gpus() > 0 and not n.deleting)
    coming = max((ordered if ordered is not None else len(members)) - serving, 0)
    needed = wanted - coming
    if pool.max_nodes is not None:
        needed = min(needed, pool.max_nodes - max(len(members), ordered or 0))
    if needed <= 0:
        return ScaleUp()
    try:
        names = provider.add_nodes(needed)
    except ProviderError as exc:
        return ScaleUp((Event("Warning", "ScaleUpFailed", str(exc)),))
    added = ", ".join(names) if names else f"{needed} node(s)"
    message = f"added {added} through {provider.describe()} for {len(demand)} Pending GPU pod(s)"
    return ScaleUp((Event("Normal", "ScaledUp", message),), ordered=True)


def _would_fit(pod: Pod, labels: Mapping[str, str], taints: tuple[Taint, ...]) -> bool:
    if any(labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    if pod.required_node_terms is not None and not any(
        node_term_matches(t, labels, labels.get("kubernetes.io/hostname", ""))
        for t in pod.required_node_terms
    ):
        return False
    return all(tolerates(pod.tolerations, t) for t in hard_taints(taints))


def _bins(demand: Sequence[Decimal], size: Decimal) -> int:
    """Nodes needed for these GPU requests, first-fit decreasing."""
    free: list[Decimal] = []
    for gpus in sorted(demand, reverse=True):
        for i, room in enumerate(free):
            if room >= gpus:
                free[i] = room - gpus
                break
        else:
            free.append(size - gpus)
    return len(free)


def _free_gpus(state: ClusterState, node: Node) -> Decimal:
    used = sum(
        (p.gpus() for p in state.snapshot.pods if p.node_name == node.name and not p.terminal), Decimal(0)
    )
    return max(node.gpus() - used, Decimal(0))


def _beyond_free_room(demand: Sequence[Decimal], free: Sequence[Decimal]) -> list[Decimal]:
    """The requests that do not fit in the free room of the nodes already serving, first-fit
    decreasing."""
    room = sorted(free, reverse=True)
    left: list[Decimal] = []
    for gpus in sorted(demand, reverse=True):
        for i, available in enumerate(room):
            if available >= gpus:
                room[i] = available - gpus
                break
        else:
            left.append(gpus)
    return left
