"""GPUNodePool conditions: Ready and Conflict, from what one pass observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.core.pool_status import PoolObservation, conflict_event, overlap_message, pool_conditions

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
OVERLAP = {"dup": ("a-0", "a-1")}


def by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conditions}


def test_a_pool_of_its_own_is_ready_and_not_in_conflict() -> None:
    conditions = by_type(pool_conditions(None, PoolObservation(generation=3, nodes=2), T0))
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "Managed")
    assert conditions["Ready"]["message"] == "2 nodes managed"
    assert (conditions["Conflict"]["status"], conditions["Conflict"]["reason"]) == (
        "False",
        "DisjointSelectors",
    )
    assert conditions["Ready"]["observedGeneration"] == 3


def test_overlapping_selectors_name_the_other_pool_and_the_shared_nodes() -> None:
    conditions = by_type(pool_conditions(None, PoolObservation(generation=1, overlaps=OVERLAP), T0))
    for kind, status in (("Ready", "False"), ("Conflict", "True")):
        assert conditions[kind]["status"] == status
        assert conditions[kind]["reason"] == "OverlappingSelectors"
        message = str(conditions[kind]["message"])
        assert "nodes a-0, a-1 also selected by GPUNodePool dup" in message
        assert "make the nodeSelectors disjoint" in message


def test_many_shared_nodes_are_listed_briefly() -> None:
    message = overlap_message({"dup": tuple(f"n-{i}" for i in range(12))})
    assert message is not None and "n-4 (+7 more)" in message and "n-5" not in message


def test_transition_time_moves_only_when_the_status_does() -> None:
    first = pool_conditions(None, PoolObservation(generation=1, nodes=1), T0)
    same = by_type(pool_conditions(first, PoolObservation(generation=1, nodes=2), LATER))
    assert same["Ready"]["lastTransitionTime"] == "2026-11-25T12:00:00Z"
    flipped = by_type(pool_conditions(first, PoolObservation(generation=1, overlaps=OVERLAP), LATER))
    assert flipped["Ready"]["lastTransitionTime"] == "2026-11-25T12:05:00Z"
    assert flipped["Conflict"]["lastTransitionTime"] == "2026-11-25T12:05:00Z"


def test_an_unreadable_pool_is_not_ready_and_keeps_what_was_said_about_conflicts() -> None:
    earlier = pool_conditions(None, PoolObservation(generation=1, overlaps=OVERLAP), T0)
    conditions = by_type(
        pool_conditions(earlier, PoolObservation(generation=None, problem="spec.nodeSelector: bad"), LATER)
    )
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "InvalidPool")
    assert conditions["Ready"]["message"] == "spec.nodeSelector: bad"
    assert conditions["Conflict"] == by_type(earlier)["Conflict"]


def test_events_mark_the_start_and_the_end_of_an_overlap_only() -> None:
    fine = pool_conditions(None, PoolObservation(generation=1, nodes=1), T0)
    clash = pool_conditions(fine, PoolObservation(generation=1, overlaps=OVERLAP), T0)
    started = conflict_event(fine, clash)
    assert started is not None and started[:2] == ("Warning", "OverlappingSelectors") and "dup" in started[2]
    assert (
        conflict_event(clash, pool_conditions(clash, PoolObservation(generation=1, overlaps=OVERLAP), T0))
        is None
    )
    ended = conflict_event(clash, pool_conditions(clash, PoolObservation(generation=1, nodes=2), T0))
    assert ended is not None and ended[:2] == ("Normal", "SelectorsDisjoint")
    assert conflict_event(None, fine) is None, "a pool that never overlapped gets no event"
    assert conflict_event(None, clash) is not None, "an overlap seen at the first pass is reported"
