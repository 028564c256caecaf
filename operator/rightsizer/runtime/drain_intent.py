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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

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
                "started": self.started.isoformat(),
                "pods": list(self.pods),
                "holder": self.holder,
                "leaseUntil": self.lease_until.isoformat() if self.lease_until else None,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Intent | None:
        try:
            raw = json.loads(text)
            lease = raw.get("leaseUntil")
            return cls(
                plan=str(raw.get("plan", "")),
                pool=str(raw["pool"]),
                phase=str(raw["phase"]),
                started=datetime.fromisoformat(str(raw["started"])),
                pods=tuple(str(p) for p in raw.get("pods") or ()),
                holder=str(raw.get("holder") or ""),
                lease_until=datetime.fromisoformat(str(lease)) if lease else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
