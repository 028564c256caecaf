"""Kubernetes resource quantities as exact Decimals.

Bin-packing and cost add many small numbers; floats drift (0.1 + 0.2), Decimals do not.
Grammar follows k8s.io/apimachinery's resource.Quantity: a signed decimal number, optional
exponent (``e``/``E``), or a binary (Ki..Ei) or decimal (n, u, m, k, M..E) suffix.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from rightsizer.core.errors import InvalidQuantity

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_PATTERN = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")

_cache: dict[str, Decimal] = {}


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """Parse a Kubernetes quantity (``"1500m"``, ``"80Gi"``, ``8``) into a Decimal in base units.

    Raises :class:`InvalidQuantity` naming the offending text; a snapshot with a broken
    quantity must be refused, not read as zero.
    """
    if type(value) is str and (known := _cache.get(value)) is not None:
        return known  # most quantities of a cluster are a handful of strings seen before
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise InvalidQuantity(str(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    text = value.strip()
    cached = _cache.get(text)
    if cached is not None:
        return cached
    match = _PATTERN.match(text)
    if not match:
        raise InvalidQuantity(value)
    number, exponent, suffix = match.groups()
    try:
        result = Decimal(number)
        if exponent:
            result = result.scaleb(int(exponent[1:]))
        elif suffix in _BINARY:
            result *= _BINARY[suffix]
        elif suffix:
            result *= _DECIMAL[suffix]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid numbers
        raise InvalidQuantity(value) from exc
    if len(_cache) < 4096:
        _cache[text] = result
    return result


def format_cpu(cores: Decimal) -> str:
    """Render CPU cores the way kubectl does for small values (millicores)."""
    millis = (cores * 1000).to_integral_value()
    return f"{millis}m" if millis % 1000 else f"{millis // 1000}"
