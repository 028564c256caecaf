"""Inter-pod rules on the node itself (hostname topology): host ports, required anti-affinity and
per-node topology spread. Rules over wider topologies (zone, rack) are not checked here: the
simulation pins a moved pod to its current domain instead, so per-domain counts stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.core.matching import selector_matches
from rightsizer.core.snapshot import HOSTNAME_LABEL, Pod


def _term_matches(term_namespaces: tuple[str, ...], all_ns: bool, owner_ns: str, other: Pod) -> bool:
    if all_ns:
        return True
    return other.namespace in (term_namespaces or (owner_ns,))


def anti_affinity_conflict(incoming: Pod, resident: Pod) -> bool:
    """Would the two pods break a required anti-affinity term on the same node (either direction)?"""
    for owner, other in ((incoming, resident), (resident, incoming)):
        for term in owner.pod_anti_affinity:
            if (
                term.topology_key == HOSTNAME_LABEL
                and _term_matches(term.namespaces, term.all_namespaces, owner.namespace, other)
                and selector_matches(term.selector, other.labels)
            ):
                return True
    return False


def spread_allows(incoming: Pod, residents: Iterable[Pod]) -> bool:
    """Per-node topology spread (DoNotSchedule): assume the emptiest eligible node holds 0 matching
    pods, so the target may hold at most maxSkew of them after the move. Conservative, never wrong."""
    residents = list(residents)
    for constraint in incoming.spread:
        if constraint.topology_key != HOSTNAME_LABEL:
            continue
        matching = sum(
            1
            for p in residents
            if p.namespace == incoming.namespace and selector_matches(constraint.selector, p.labels)
        )
        if matching + 1 > constraint.max_skew:
            return False
    return True


def host_port_conflict(incoming: Pod, resident: Pod) -> bool:
    """Two pods cannot bind the same protocol/port on one node unless their host IPs differ."""
    for protocol, port, ip in incoming.host_ports:
        for other_protocol, other_port, other_ip in resident.host_ports:
            if (
                protocol == other_protocol
                and port == other_port
                and (ip in ("", "0.0.0.0") or other_ip in ("", "0.0.0.0") or ip == other_ip)
            ):
                return True
    return False


def needs_neighbour_check(pod: Pod) -> bool:
    return (
        bool(pod.host_ports)
        or any(t.topology_key == HOSTNAME_LABEL for t in pod.pod_anti_affinity)
        or any(c.topology_key == HOSTNAME_LABEL for c in pod.spread)
    )
