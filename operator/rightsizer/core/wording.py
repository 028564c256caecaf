"""How numbers read in reasons, conditions and annotations, and how the numbers stored there are
read back.

Reasons are for people: no trailing zeros on percentages, money rounded only here, at the edge,
while every computation keeps exact Decimals.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

TIMES = "\N{MULTIPLICATION SIGN}"


def exact(value: float) -> Decimal:
    """The Decimal of a float's shortest repr, so the numbers users read are the numbers compared:
    66% against 60% is exactly 10% over (floats say 10.000000000000009%)."""
    return Decimal(repr(value))


def stored_number(value: object) -> Decimal | None:
    """A number read back from a stored status (JSON: an int, a float or a numeric string) as the
    exact Decimal that was written; None when it is missing or not a finite number (a bool, text,
    NaN, Infinity, a list): unknown, which a caller must never take for 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = exact(value) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def join_reasons(*parts: str) -> str:
    """Parts of one reason, empty ones left out: ``"idle 2h; util 3% < target 60%"``."""
    return "; ".join(part for part in parts if part)


def format_percent(value: float) -> str:
    """``90.0 -> "90%"``, ``62.55 -> "62.5%"`` (one decimal at most)."""
    return f"{format_number(value)}%"


def format_number(value: float | Decimal, places: int = 1) -> str:
    """At most ``places`` decimals, trailing zeros dropped: ``3.0 -> "3"``, ``0.35 -> "0.35"``."""
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_money(value: Decimal, places: int = 4) -> str:
    """Round money for display only, half up, so a reader checking by hand gets the same digits."""
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
