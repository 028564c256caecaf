"""Selectors, node affinity terms and taints matched as the scheduler matches them.

Pure predicates shared by placement (binpack), protection (PDBs, ownership) and pools, kept apart
from the snapshot model so each of those reads only the rules it applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rightsizer.core.snapshot import Labels, LabelSelector, NodeSelectorTerm, Requirement, Taint, Toleration


def requirement_matches(req: Requirement, value: str | None) -> bool:
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if value is None or len(req.values) != 1:
        return False
    try:
        number, bound = int(value), int(req.values[0])
    except ValueError:
        return False
    return number > bound if op == "Gt" else number < bound


def selector_matches(selector: LabelSelector | None, labels: Labels) -> bool:
    if selector is None:
        return False
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels.get(r.key)) for r in selector.match_expressions)


def node_term_matches(term: NodeSelectorTerm, labels: Labels, node_name: str) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False
    if not all(requirement_matches(r, labels.get(r.key)) for r in term.match_expressions):
        return False
    return all(
        requirement_matches(r, node_name if r.key == "metadata.name" else None) for r in term.match_fields
    )


def tolerates(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if t.operator == "Exists":
            if not t.key or t.key == taint.key:
                return True
        elif t.key == taint.key and t.value == taint.value:
            return True
    return False


def hard_taints(taints: Sequence[Taint]) -> tuple[Taint, ...]:
    """Taints that keep pods away; PreferNoSchedule is only a preference."""
    return tuple(t for t in taints if t.effect in ("NoSchedule", "NoExecute"))
