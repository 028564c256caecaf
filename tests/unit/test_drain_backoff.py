"""A node whose drain failed is left alone for a while, longer after every failure in a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.drain_backoff import (
    BackoffPolicy,
    NodeFailures,
    cooling_down,
    describe,
    prune,
    record_failure,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = BackoffPolicy(base=timedelta(minutes=10), cap=timedelta(hours=2))


@pytest.mark.parametrize(
    ("failures", "minutes"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 120), (9, 120), (200, 120)]
)
def test_back_off_doubles_per_failure_up_to_the_cap(failures: int, minutes: int) -> None:
    assert POLICY.delay(failures) == timedelta(minutes=minutes)


def test_a_failed_node_is_cooling_down_until_its_back_off_ends() -> None:
    history = record_failure({}, "a-0", T0, POLICY)
    assert cooling_down(history, "a-0", T0 + timedelta(minutes=9, seconds=59)) is not None
    assert cooling_down(history, "a-0", T0 + timedelta(minutes=10)) is None
    assert cooling_down(history, "a-1", T0) is None, "other nodes are not affected"


def test_failing_again_after_the_cool_down_doubles_it() -> None:
    history = record_failure({}, "a-0", T0, POLICY)
    again = T0 + timedelta(minutes=11)
    history = record_failure(history, "a-0", again, POLICY)
    assert history["a-0"].count == 2
    assert history["a-0"].until == again + timedelta(minutes=20)


def test_a_node_is_forgiven_a_cap_after_its_last_cool_down() -> None:
    history = record_failure({}, "a-0", T0, POLICY)
    later = T0 + timedelta(minutes=10) + timedelta(hours=2)
    assert record_failure(history, "a-0", later, POLICY)["a-0"].count == 1
    assert prune(history, {"a-0"}, later, POLICY) == {}
    assert prune(history, {"a-0"}, later - timedelta(seconds=1), POLICY) == history


def test_nodes_that_are_gone_are_forgotten() -> None:
    history = record_failure(record_failure({}, "a-0", T0, POLICY), "a-1", T0, POLICY)
    assert set(prune(history, {"a-1"}, T0, POLICY)) == {"a-1"}


def test_description_says_how_many_failures_and_when_the_next_attempt_is() -> None:
    history = record_failure(record_failure({}, "a-0", T0, POLICY), "a-0", T0 + timedelta(minutes=10), POLICY)
    text = describe(history["a-0"], T0 + timedelta(minutes=10, seconds=30))
    assert text == "2 failed drains; next attempt in 19m30s"


def test_a_cap_below_the_base_never_shortens_the_base() -> None:
    assert BackoffPolicy(base=timedelta(seconds=60), cap=timedelta(seconds=10)).delay(3) == timedelta(
        seconds=60
    )


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_the_cool_down_stays_within_base_and_cap_and_grows_while_failures_continue(gaps: list[int]) -> None:
    history: dict[str, NodeFailures] = {}
    now = T0
    previous = timedelta(0)
    for gap in gaps:
        now += timedelta(seconds=gap)
        before = history.get("n")
        continued = before is not None and now < before.until + POLICY.cap
        history = record_failure(history, "n", now, POLICY)
        delay = history["n"].until - now
        assert POLICY.base <= delay <= POLICY.cap
        if continued:
            assert delay >= previous
        previous = delay
