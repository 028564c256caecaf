"""One time grammar for every reader: what one part of the operator accepts, no other refuses, and a
time without a zone is never guessed at (held or refused, by what the reader does with the unknown)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rightsizer.core.errors import InvalidSnapshot
from rightsizer.core.protections import DO_NOT_DISRUPT_UNTIL, protected_until
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.timestamps import format_precise, format_time, parse_time
from rightsizer.runtime.drain_intent import Intent
from tests.unit.planner_builders import kube_list, pod

TEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00Z", TEN),
        ("2026-03-02t10:00:00z", TEN),  # RFC 3339 allows either case
        ("2026-03-02 10:00:00Z", TEN),  # and a space between date and time
        (" 2026-03-02T11:00:00+01:00 ", TEN),
        ("2026-03-02T10:00:00.250000Z", TEN + timedelta(milliseconds=250)),
        ("2026-03-02T10:00:00.250000001Z", TEN + timedelta(milliseconds=250)),  # nanoseconds cut
        ("2026-03-02T10:00:00", None),  # no zone: the reader's zone would be a guess
        ("2026-03-02T10Z", None),  # no minutes and seconds: ISO 8601, not RFC 3339
        ("20260302T100000Z", None),  # ISO 8601's basic form
        ("2026-03-02", None),
        ("2026-13-02T10:00:00Z", None),  # right shape, impossible month
        ("1772445600", None),
        ("", None),
        (1772445600, None),
        (None, None),
    ],
)
def test_the_one_grammar(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_what_the_operator_writes_it_reads_back() -> None:
    precise = TEN + timedelta(microseconds=123456)
    assert format_precise(precise) == "2026-03-02T10:00:00.123456Z"
    assert parse_time(format_precise(precise)) == precise
    assert parse_time(format_time(precise)) == TEN  # status times: whole seconds
    other_zone = precise.astimezone(timezone(timedelta(hours=-5)))
    assert format_precise(other_zone) == "2026-03-02T10:00:00.123456Z"  # always written in UTC


def test_a_zoneless_protection_time_protects_and_says_so() -> None:
    held = protected_until({DO_NOT_DISRUPT_UNTIL: "2026-03-02T12:00:00"}, TEN, "pod a")
    assert held.protected and held.unreadable
    assert protected_until({DO_NOT_DISRUPT_UNTIL: "2026-03-02T12:00:00Z"}, TEN, "pod a").protected
    assert not protected_until({DO_NOT_DISRUPT_UNTIL: "2026-03-02T09:00:00Z"}, TEN, "pod a").protected


def test_a_snapshot_time_without_a_zone_is_refused_naming_where() -> None:
    item = pod("w-1", "n1")
    item["metadata"]["creationTimestamp"] = "2026-03-02T10:00:00"
    with pytest.raises(InvalidSnapshot, match=r"creationTimestamp: '2026-03-02T10:00:00' is not an RFC 3339"):
        snapshot_from_document(kube_list(item))
    item["metadata"]["creationTimestamp"] = "2026-03-02T10:00:00Z"
    (parsed,) = snapshot_from_document(kube_list(item)).pods
    assert parsed.created == TEN


def test_a_drain_intent_round_trips_and_one_with_an_unreadable_time_is_unreadable() -> None:
    intent = Intent(
        plan="p",
        pool="gpu",
        phase="draining",
        started=TEN + timedelta(microseconds=5),
        lease_until=TEN + timedelta(seconds=30),
    )
    assert Intent.from_json(intent.to_json()) == intent
    raw = json.loads(intent.to_json())
    for field, value in (("started", "2026-03-02T10:00:00"), ("leaseUntil", "soon")):
        assert Intent.from_json(json.dumps({**raw, field: value})) is None, field
