"""Drains run on their own worker threads, never on kopf's shared handler workers.

A drain can take as long as its pods' replacements take to become Ready (minutes, bounded by the drain
timeout). Run inside a pool's kopf timer it would hold one of kopf's few workers, and every other
pool's pass behind the pool lock, so GPUWorkloads would stop being reconciled while a node drains. The
pass plans, hands each node to this runner and returns; the outcome is reported by the next pass of
that pool. ``workers=0`` runs each drain inline (unit tests, one-shot commands).

Each drain gets a daemon thread (at most ``workers`` at once): a process told to stop is not held up
by a drain in progress, whose intent the next leader's recovery finishes or rolls back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rightsizer.runtime.drain_steps import Result, StepOutcome

log = logging.getLogger(__name__)


class DrainRunner:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # node -> pool
        self._done: dict[str, list[StepOutcome]] = {}  # pool -> outcomes not reported yet

    @property
    def inline(self) -> bool:
        return self._workers <= 0

    def busy(self) -> frozenset[str]:
        """Nodes this process is draining right now: recovery must leave their intents alone."""
        with self._lock:
            return frozenset(self._running)

    def free(self) -> int:
        with self._lock:
            return 1 if self.inline else max(self._workers - len(self._running), 0)

    def running_in(self, pool: str) -> int:
        with self._lock:
            return sum(1 for owner in self._running.values() if owner == pool)

    def submit(self, pool: str, node: str, drain: Callable[[], StepOutcome]) -> StepOutcome | None:
        """Start draining ``node``; inline, the outcome at once, else None (reported by ``finished``)."""
        if self.inline:
            return drain()
        with self._lock:
            self._running[node] = pool
        thread = threading.Thread(
            target=self._run, args=(pool, node, drain), name=f"drain {node}", daemon=True
        )
        thread.start()
        return None

    def finished(self, pool: str) -> list[StepOutcome]:
        """Outcomes of ``pool``'s drains that ended since the last call."""
        with self._lock:
            return self._done.pop(pool, [])

    def _run(self, pool: str, node: str, drain: Callable[[], StepOutcome]) -> None:
        try:
            outcome = drain()
        except Exception as exc:  # the node keeps its intent: the next pass's recovery rolls it back
            log.exception("drain of %s failed", node)
            outcome = StepOutcome(node, pool, Result.FAILED, f"drain of {node} failed: {exc}")
        with self._lock:
            self._running.pop(node, None)
            self._done.setdefault(pool, []).append(outcome)
