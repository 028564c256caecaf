"""Conditions, for both kinds of object: the transition time says since when, and only a change moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.api.v1alpha1.common import Condition
from rightsizer.core.conditions import ConditionState, find_condition, merge_conditions, replace_conditions

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
READY = ConditionState("Ready", True, "Managed", "2 nodes managed")
NOT_READY = ConditionState("Ready", False, "InvalidPool", "spec.nodeSelector: bad")
CONFLICT = ConditionState("Conflict", False, "DisjointSelectors", "no other GPUNodePool selects these nodes")


def test_a_condition_is_written_in_the_api_shape() -> None:
    [ready] = merge_conditions(None, [READY], T0, 3)
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Managed",
        "message": "2 nodes managed",
        "lastTransitionTime": "2026-11-25T10:00:00Z",
        "observedGeneration": 3,
    }
    assert Condition.model_validate(ready).reason == "Managed"


def test_the_generation_is_left_out_when_unknown() -> None:
    [ready] = merge_conditions(None, [READY], T0, None)
    assert "observedGeneration" not in ready


def test_transition_time_moves_only_when_the_status_does() -> None:
    first = merge_conditions(None, [READY, CONFLICT], T0, 1)
    reworded = ConditionState("Ready", True, "Managed", "3 nodes managed")
    same = merge_conditions(first, [reworded, CONFLICT], LATER, 2)
    assert [c["lastTransitionTime"] for c in same] == ["2026-11-25T10:00:00Z"] * 2
    assert same[0]["message"] == "3 nodes managed" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(same, [NOT_READY, CONFLICT], LATER, 2)
    assert [c["lastTransitionTime"] for c in flipped] == ["2026-11-25T10:05:00Z", "2026-11-25T10:00:00Z"]


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "Ready",
        {"type": "Ready"},
        [{"type": "Ready", "status": "True"}],  # no time: since when is unknown
        [{"type": "Ready", "status": "True", "lastTransitionTime": 12}],
        [None, 3, {"status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    ],
)
def test_what_is_not_a_stored_condition_starts_the_clock_now(stored: Any) -> None:
    [ready] = merge_conditions(stored, [READY], LATER, None)
    assert ready["lastTransitionTime"] == "2026-11-25T10:05:00Z"


def test_conditions_come_in_the_order_asked_for() -> None:
    stored = merge_conditions(None, [CONFLICT, READY], T0, 1)
    assert [c["type"] for c in merge_conditions(stored, [READY, CONFLICT], T0, 1)] == ["Ready", "Conflict"]


def test_find_a_condition_by_type() -> None:
    stored = merge_conditions(None, [READY, CONFLICT], T0, 1)
    assert find_condition(stored, "Conflict")["reason"] == "DisjointSelectors"
    assert find_condition(stored, "Scaling") == {}
    assert find_condition(None, "Ready") == {}


def test_replacing_conditions_keeps_the_others_as_stored() -> None:
    stored = merge_conditions(None, [READY, CONFLICT], T0, 1)
    inputs = merge_conditions(
        None, [ConditionState("InputsAvailable", False, "InputsUnreadable", "x")], LATER, 1
    )
    replaced = replace_conditions(stored, [*merge_conditions(stored, [NOT_READY], LATER, 1), *inputs])
    assert replaced == [
        merge_conditions(stored, [NOT_READY], LATER, 1)[0],
        stored[1],
        inputs[0],
    ]
