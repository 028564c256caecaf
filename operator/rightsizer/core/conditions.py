"""Status conditions in the standard Kubernetes shape, as both GPUWorkload and GPUNodePool store them.

A pass says what holds now (:class:`ConditionState`); :func:`merge_conditions` turns that into the
stored list, keeping each condition's ``lastTransitionTime`` while its status is unchanged, so the
time says since when something has been so. The wire shape is the API's ``Condition`` model, which
generates the CRDs; here conditions are plain camelCase dicts because they are read back from, and
merge-patched into, the stored status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rightsizer.core.timestamps import format_time


@dataclass(frozen=True, slots=True)
class ConditionState:
    """What one pass says about one aspect of the object: a condition without its transition time."""

    type: str
    status: bool
    reason: str
    """CamelCase, e.g. MetricsFresh."""
    message: str


def merge_conditions(
    stored: object, states: Iterable[ConditionState], now: datetime, generation: int | None
) -> list[dict[str, Any]]:
    """The conditions for ``states``, in their order; ``stored`` is the list currently stored.

    A transition time moves only when its condition's status does (or when none was stored).
    ``observedGeneration`` is written only when the object's generation is known.
    """
    earlier = _by_type(stored)
    return [_condition(earlier.get(state.type) or {}, state, now, generation) for state in states]


def replace_conditions(stored: object, updates: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The stored conditions with each of ``updates`` in place of the one of its type (appended when
    there was none); the others stay exactly as stored."""
    merged = {kind: dict(stored_one) for kind, stored_one in _by_type(stored).items()}
    for update in updates:
        merged[str(update["type"])] = dict(update)
    return list(merged.values())


def find_condition(conditions: object, kind: str) -> Mapping[str, Any]:
    """The condition of type ``kind`` in a stored list; empty when there is none."""
    return _by_type(conditions).get(kind) or {}


def _by_type(stored: object) -> dict[str, Mapping[str, Any]]:
    """The stored conditions by type; anything that is not a condition is left out.

    The CRDs declare conditions a list map keyed by type, so the API server keeps one per type.
    """
    if not isinstance(stored, Iterable) or isinstance(stored, str | bytes | Mapping):
        return {}
    return {c["type"]: c for c in stored if isinstance(c, Mapping) and isinstance(c.get("type"), str)}


def _condition(
    before: Mapping[str, Any], state: ConditionState, now: datetime, generation: int | None
) -> dict[str, Any]:
    text = "True" if state.status else "False"
    since = before.get("lastTransitionTime")
    unchanged = before.get("status") == text and isinstance(since, str)
    out: dict[str, Any] = {
        "type": state.type,
        "status": text,
        "reason": state.reason,
        "message": state.message,
        "lastTransitionTime": since if unchanged else format_time(now),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out
