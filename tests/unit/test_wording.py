"""Numbers read back from a stored status: exactly what was written, or unknown."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rightsizer.core.wording import stored_number

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (3, Decimal(3)),
        (0, Decimal(0)),
        (-2, Decimal(-2)),
        (2.3457, Decimal("2.3457")),  # the float's shortest repr, not its binary expansion
        (0.1, Decimal("0.1")),
        ("12.5083333333", Decimal("12.5083333333")),
        (" 4.25 ", Decimal("4.25")),
        ("1e3", Decimal(1000)),
        (None, None),  # missing
        (True, None),  # a bool is JSON's, not a number
        (False, None),
        ("", None),
        ("lots", None),
        ("NaN", None),
        (float("nan"), None),
        ("Infinity", None),
        (float("-inf"), None),
        ([1], None),
        ({"value": 1}, None),
    ],
)
def test_a_stored_number_reads_as_written_and_anything_else_is_unknown(
    stored: object, read: Decimal | None
) -> None:
    assert stored_number(stored) == read
