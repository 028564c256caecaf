"""Durations in our resources read like Go's: 30s, 5m, 1h30m; garbage is refused with a remedy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.api.durations import InvalidDuration, format_duration, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h45m10s", timedelta(hours=2, minutes=45, seconds=10)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("90m", timedelta(minutes=90)),
        ("1m1m", timedelta(minutes=2)),
    ],
)
def test_parse_duration_reads_go_style_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "5 minutes", "-5m", "5d", "1h 30m", "m", "1.h", "PT5M", "30S", "1" * 40 + "s"]
)
def test_parse_duration_refuses_garbage_with_examples(text: str) -> None:
    with pytest.raises(InvalidDuration, match=r"must be a duration such as 30s, 5m or 1h30m"):
        parse_duration(text)


def test_invalid_duration_is_a_value_error_so_pydantic_reports_it() -> None:
    assert issubclass(InvalidDuration, ValueError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(hours=26), "26h"),
        (timedelta(seconds=1, milliseconds=500), "1s500ms"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_format_duration_is_short_and_readable(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_format_then_parse_round_trips_to_the_millisecond(value: timedelta) -> None:
    whole_millis = timedelta(milliseconds=value // timedelta(milliseconds=1))
    assert parse_duration(format_duration(value)) == whole_millis
