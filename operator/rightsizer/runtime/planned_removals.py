"""Marks on the nodes a plan empties, so pods evicted now do not land on the nodes emptied next.

The default kube-scheduler spreads (LeastAllocated): a pod evicted from the first node of a plan goes
to the emptiest node it fits, which is often the next node the plan empties, and then moves twice.
Before any eviction the pool pass marks every node its plan removes with a ``PreferNoSchedule``
taint. kube-scheduler's TaintToleration score (weight 3 by default, against 1 for each resource
score) then sends replacements to kept nodes, while a pod that fits nowhere else may still use a
marked node: a mark never leaves a pod Pending. Each pass sets the marks to exactly the nodes of the
current plan and takes them off every other node of the pool (a changed plan, a pool held still, a
node kept after a failed drain), so no mark outlives the plan that made it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Protocol

from kubernetes.client.rest import ApiException

from rightsizer.core.errors import RightsizerError
from rightsizer.core.snapshot import Node, Taint

log = logging.getLogger(__name__)

PLANNED_REMOVAL = Taint("rightsizer.io/planned-removal", "consolidation", "PreferNoSchedule")


class TaintEdge(Protocol):
    def set_taint(self, node: str, taint: Taint, present: bool) -> None: ...


def mark_changes(members: Sequence[Node], planned: Collection[str]) -> tuple[list[str], list[str]]:
    """(nodes to mark, nodes to unmark) so that exactly the planned members carry the mark."""
    marked = {n.name for n in members if any(t.key == PLANNED_REMOVAL.key for t in n.taints)}
    names = [n.name for n in members]
    return (
        [n for n in names if n in planned and n not in marked],
        [n for n in names if n not in planned and n in marked],
    )


def apply_marks(edge: TaintEdge, members: Sequence[Node], planned: Collection[str]) -> list[str]:
    """Set the marks; a node that refuses is said in the log and tried again next pass (a mark is
    a preference: a missing or late one costs an extra move at worst, never a wrong eviction).
    Returns the nodes whose mark could not be set or taken off."""
    add, remove = mark_changes(members, planned)
    failed: list[str] = []
    for node, present in [*((n, True) for n in add), *((n, False) for n in remove)]:
        try:
            edge.set_taint(node, PLANNED_REMOVAL, present)
        except (ApiException, RightsizerError) as exc:
            log.warning(
                "could not %s node %s as planned for removal: %s", "mark" if present else "unmark", node, exc
            )
            failed.append(node)
    return failed
