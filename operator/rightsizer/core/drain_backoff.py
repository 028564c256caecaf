"""When a node whose drain failed may be drained again.

A drain that fails (an eviction refused, replacements not Running in time, the provider refusing
the removal) is rolled back, but whatever made it fail is usually still there on the next pass: a
workload whose new pods never become Ready would be evicted again every interval. So each failure
puts its node in a cool-down, doubling with every consecutive failure up to a cap; the node is
forgiven once a whole cap has passed after its cool-down without another failure. The history is a
plain mapping from node name to :class:`NodeFailures`; every function here returns a new one.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rightsizer.api.durations import format_duration


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: timedelta = timedelta(minutes=10)
    cap: timedelta = timedelta(hours=2)

    def delay(self, failures: int) -> timedelta:
        """Cool-down after the ``failures``-th consecutive failure (1, 2, …): base, 2×base, … ≤ cap."""
        doubled = self.base * (1 << min(max(failures - 1, 0), 16))
        return min(doubled, max(self.cap, self.base))


@dataclass(frozen=True, slots=True)
class NodeFailures:
    count: int
    last: datetime
    until: datetime


History = Mapping[str, NodeFailures]


def record_failure(
    history: History, node: str, now: datetime, policy: BackoffPolicy
) -> dict[str, NodeFailures]:
    """The history after a failed drain of ``node`` at ``now``."""
    previous = history.get(node)
    count = 1 if previous is None or _forgiven(previous, now, policy) else previous.count + 1
    return {**history, node: NodeFailures(count, now, now + policy.delay(count))}


def cooling_down(history: History, node: str, now: datetime) -> NodeFailures | None:
    """The node's failures while it must not be drained yet, else None."""
    failures = history.get(node)
    return failures if failures is not None and now < failures.until else None


def prune(
    history: History, existing: Collection[str], now: datetime, policy: BackoffPolicy
) -> dict[str, NodeFailures]:
    """Forget nodes that are gone, and nodes that have not failed for a whole cap."""
    return {
        node: failures
        for node, failures in history.items()
        if node in existing and not _forgiven(failures, now, policy)
    }


def describe(failures: NodeFailures, now: datetime) -> str:
    """For events and skip reasons: ``2 failed drains; next attempt in 19m``."""
    plural = "s" if failures.count > 1 else ""
    left = timedelta(seconds=math.ceil(max((failures.until - now).total_seconds(), 0)))
    return f"{failures.count} failed drain{plural}; next attempt in {format_duration(left)}"


def _forgiven(failures: NodeFailures, now: datetime, policy: BackoffPolicy) -> bool:
    return now >= failures.until + max(policy.cap, policy.base)
