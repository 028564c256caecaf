"""The drain intent's lease: claim it, renew it while it is still ours, take over an expired one.

Apart from the executor so the one rule every step depends on ("is this drain still mine?") reads
in one place. Renewals and take-overs are compare-and-swap writes: a process paused between
reading the intent and writing it back must never undo what another process did meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from rightsizer.core.snapshot import Node
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent


class LeaseEdge(Protocol):
    def node(self, name: str) -> Node | None: ...
    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None: ...
    def swap_annotation(self, node: str, key: str, expected: str, value: str) -> bool: ...


@dataclass(frozen=True)
class IntentLease:
    edge: LeaseEdge
    holder: str
    clock: Callable[[], datetime]
    lease: timedelta

    def claim(self, node: str, intent: Intent) -> Intent:
        """Write a new intent as ours (the drain's first step: nothing of another's to protect)."""
        claimed = intent.renewed(self.holder, self.clock(), self.lease)
        self.edge.annotate(node, {INTENT_ANNOTATION: claimed.to_json()})
        return claimed

    def reclaim(self, node: str, intent: Intent, read: str) -> Intent | None:
        """Renew or take over ``intent`` only if the annotation still reads ``read``; None if not."""
        claimed = intent.renewed(self.holder, self.clock(), self.lease)
        swapped = self.edge.swap_annotation(node, INTENT_ANNOTATION, read, claimed.to_json())
        return claimed if swapped else None

    def keep(self, node: str) -> Intent | None:
        """Before each step: the intent as it stands if it is still ours (its lease renewed when half
        gone), or None when another process took it over (or it went): then stop, touching nothing."""
        live = self.edge.node(node)
        raw = live.annotations.get(INTENT_ANNOTATION) if live is not None else None
        current = Intent.from_json(raw) if raw else None
        if raw is None or current is None or current.holder != self.holder:
            return None
        now = self.clock()
        if current.lease_until is None or current.lease_until - now < self.lease / 2:
            return self.reclaim(node, current, raw)
        return current
