"""The drain intent a node carries while the operator disrupts it: what, for which pool, in which phase,
and who holds it until when.

The holder (one operator process) renews its lease while it works. Another replica (a new leader) takes
over only an intent whose lease has run out, by writing itself in as the holder before it resumes or
rolls the drain back; the old holder re-reads the intent before each step and stops when it is no
longer its own. So a leader that was paused (SIGSTOP, a long GC, a partition) and comes back never
evicts or deletes after someone else took over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rightsizer.core.snapshot import Node
from rightsizer.core.surge import Owner
from rightsizer.core.timestamps import format_precise, parse_time

INTENT_ANNOTATION = "rightsizer.io/disruption-intent"
PHASE_DRAINING = "draining"
PHASE_REMOVING = "removing"


def process_holder() -> str:
    """This process, unique across restarts and replicas: host, pid and start time."""
    return f"{socket.gethostname()}/{os.getpid()}/{int(time.time())}"


@dataclass(frozen=True)
class Intent:
    """What the operator is doing to a node, written on the node before it acts."""

    plan: str
    pool: str
    phase: str
    started: datetime
    pods: tuple[str, ...] = ()
    holder: str = ""  # "" in intents written before holders existed: anyone may take those over
    lease_until: datetime | None = None
    removal_started: datetime | None = None  # when the provider was asked to remove the node
    surges: tuple[Owner, ...] = ()  # owners raised before evicting: restored on every way out

    def held_by_other(self, holder: str, now: datetime) -> bool:
        """Does another live process hold this intent (its lease not run out)?"""
        return (
            bool(self.holder)
            and self.holder != holder
            and self.lease_until is not None
            and now < self.lease_until
        )

    def renewed(self, holder: str, now: datetime, lease: timedelta) -> Intent:
        return replace(self, holder=holder, lease_until=now + lease)

    def to_json(self) -> str:
        return json.dumps(
            {
                "plan": self.plan,
                "pool": self.pool,
                "phase": self.phase,
                "started": format_precise(self.started),
                "pods": list(self.pods),
                "holder": self.holder,
                "leaseUntil": format_precise(self.lease_until) if self.lease_until else None,
                "removalStarted": format_precise(self.removal_started) if self.removal_started else None,
                "surges": [{"kind": o.kind, "namespace": o.namespace, "name": o.name} for o in self.surges],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Intent | None:
        try:
            raw = json.loads(text)
            lease, removal = raw.get("leaseUntil"), raw.get("removalStarted")
            return cls(
                plan=str(raw.get("plan", "")),
                pool=str(raw["pool"]),
                phase=str(raw["phase"]),
                started=_time(raw["started"]),
                pods=tuple(str(p) for p in raw.get("pods") or ()),
                holder=str(raw.get("holder") or ""),
                lease_until=_time(lease) if lease else None,
                removal_started=_time(removal) if removal else None,
                surges=tuple(
                    Owner(str(o["kind"]), str(o["namespace"]), str(o["name"]))
                    for o in raw.get("surges") or ()
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _time(value: object) -> datetime:
    """A time of the intent; one it cannot read makes the whole intent unreadable (held, not guessed)."""
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    return parsed


def stuck_removals(nodes: Iterable[Node], now: datetime, bound: timedelta) -> list[tuple[str, timedelta]]:
    """Nodes whose removal was asked of the provider at least ``bound`` ago and that are still there,
    with how long ago. An intent written before removals were timed counts from the drain's start."""
    stuck = []
    for node in nodes:
        raw = node.annotations.get(INTENT_ANNOTATION)
        intent = Intent.from_json(raw) if raw else None
        if intent is None or intent.phase != PHASE_REMOVING:
            continue
        waited = now - (intent.removal_started or intent.started)
        if waited >= bound:
            stuck.append((node.name, waited))
    return sorted(stuck)
