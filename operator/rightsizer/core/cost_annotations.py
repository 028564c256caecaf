"""When the cost annotations on a target and its pods are worth writing again.

The GPUWorkload's status carries the exact cost every pass. The annotations repeat it on the target
and on every pod for tools that read those objects, and writing them every pass would cost one patch
per pod and target per interval: at 30 s and 5,000 pods, more requests than everything else the
operator does. So rates (cost per hour, efficiency, currency, workload) are rewritten when their
shown text changes, and the running total, which changes every pass, only when it has fallen behind
by more than what the workload spends in a few minutes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation

# How far behind a shown cost-to-date may fall, in spending time at the current rate. Each workload
# gets its own point in [half, all] of it, so workloads created together do not all refresh at once.
COST_TO_DATE_LAG = timedelta(minutes=10)

_HOUR = Decimal(3600)


def allowed_lag(workload_key: str, lag: timedelta = COST_TO_DATE_LAG) -> timedelta:
    """This workload's lag: between half and all of `lag`, fixed per workload (a hash of its key)."""
    fraction = Decimal(zlib.crc32(workload_key.encode()) % 1000) / Decimal(1000)
    seconds = Decimal(str(lag.total_seconds())) * (Decimal("0.5") + fraction / 2)
    return timedelta(seconds=float(seconds))


def to_date_is_stale(shown: str | None, to_date: Decimal, per_hour: Decimal, lag: timedelta) -> bool:
    """The shown cost-to-date must be rewritten: it is missing or unreadable, ahead of the real total
    (the accrual started over), or behind by more than `lag` of spending at `per_hour`."""
    if shown is None:
        return True
    try:
        value = Decimal(shown)
    except InvalidOperation:
        return True
    if not value.is_finite() or value > to_date:
        return True
    return to_date - value > per_hour * Decimal(str(lag.total_seconds())) / _HOUR


def annotations_are_stale(
    shown: Mapping[str, str],
    wanted: Mapping[str, str],
    *,
    to_date_key: str,
    per_hour: Decimal,
    lag: timedelta,
) -> bool:
    """Whether an object showing `shown` needs `wanted` written: any other value differs, or the
    cost-to-date (compared as displayed, so rounding never reads as "ahead") is stale."""
    if any(shown.get(k) != v for k, v in wanted.items() if k != to_date_key):
        return True
    if to_date_key not in wanted:
        return False
    return to_date_is_stale(shown.get(to_date_key), Decimal(wanted[to_date_key]), per_hour, lag)
