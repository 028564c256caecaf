"""Durations as users write them in our resources: ``30s``, ``5m``, ``1h30m``, ``250ms``.

The grammar is the subset of Go's ``time.ParseDuration`` that makes sense for policies
(no sign, units ``ms``, ``s``, ``m``, ``h``), so the same strings work in CEL's ``duration()``
and in every Kubernetes tool users already know. The CRD carries the same pattern, so the
API server and this parser agree on what is valid.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

# One source for the CRD pattern and the parser: a lone "0", or one or more <number><unit>.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
DURATION_EXAMPLES = "such as 30s, 5m or 1h30m (units ms, s, m, h)"

_WHOLE = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_MAX_LENGTH = 32


class InvalidDuration(ValueError):
    """A duration string that neither we nor the API server would accept."""

    def __init__(self, text: object) -> None:
        super().__init__(f"invalid duration {text!r}: must be a duration {DURATION_EXAMPLES}")
        self.text = text


def parse_duration(text: str) -> timedelta:
    """Parse ``"1h30m"`` into ``timedelta(hours=1, minutes=30)``; raise :class:`InvalidDuration`."""
    if not isinstance(text, str) or len(text) > _MAX_LENGTH or not _WHOLE.match(text):
        raise InvalidDuration(text)
    seconds = sum(
        (Decimal(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text)),
        start=Decimal(0),
    )
    # Whole microseconds: timedelta's resolution; finer parts of a policy duration are noise.
    return timedelta(microseconds=int((seconds * 1_000_000).to_integral_value()))


def format_duration(value: timedelta) -> str:
    """Render a timedelta to the millisecond in the form :func:`parse_duration` reads (``"1h30m"``).

    A negative value (e.g. a sample from a clock ahead of ours) renders with a leading ``-``
    for messages; policies never hold one, since the parser refuses a sign.
    """
    if value < timedelta(0):
        return "-" + format_duration(-value)
    millis = value // timedelta(milliseconds=1)
    if millis == 0:
        return "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


def format_seconds(value: timedelta) -> str:
    """A wait or an age said to the second (``"3m16s"``): the milliseconds are noise to the reader."""
    return format_duration(timedelta(seconds=int(value.total_seconds())))
