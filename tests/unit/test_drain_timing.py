"""An empty node goes only after scaleDownAfter of being empty; memory of nodes is per node, not name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rightsizer.adapters.cluster_snapshot import ClusterState
from rightsizer.core.drain_backoff import BackoffPolicy
from rightsizer.core.snapshot import Node, Snapshot
from rightsizer.runtime.drain_steps import NodeStep
from rightsizer.runtime.drain_timing import DrainTiming

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
AFTER = timedelta(minutes=10)
POLICY = BackoffPolicy()


def node(name: str, uid: str) -> Node:
    return Node(name, {}, {}, (), False, {}, T0, uid=uid)


def state(*nodes: Node) -> ClusterState:
    return ClusterState(Snapshot(nodes=nodes, pods=()), pools=(), pool_documents={}, pool_errors={})


def due(timing: DrainTiming, name: str, now: datetime) -> bool:
    step = NodeStep(name, "gpu", "empty", ())
    return bool(timing.due([step], "gpu", AFTER, now))


def test_an_empty_node_is_due_once_it_has_been_empty_for_scale_down_after() -> None:
    timing = DrainTiming()
    a = node("gpu-1", "uid-1")
    timing.observe(state(a), [a], T0, POLICY)
    assert not due(timing, "gpu-1", T0 + AFTER - timedelta(seconds=1))
    assert due(timing, "gpu-1", T0 + AFTER)


def test_a_namesake_that_replaced_a_removed_node_starts_its_own_wait() -> None:
    timing = DrainTiming()
    old = node("gpu-1", "uid-old")
    timing.observe(state(old), [old], T0, POLICY)
    new = node("gpu-1", "uid-new")  # the old node went; a new one came up under the same name
    later = T0 + AFTER
    timing.observe(state(new), [new], later, POLICY)
    assert not due(timing, "gpu-1", later), "the new node has only just become empty"
    assert due(timing, "gpu-1", later + AFTER)


def test_nodes_that_are_gone_are_forgotten_whichever_pool_saw_them() -> None:
    timing = DrainTiming()
    a, b = node("gpu-1", "uid-1"), node("cpu-1", "uid-2")
    timing.observe(state(a, b), [a], T0, POLICY)
    timing.observe(state(b), [b], T0 + timedelta(minutes=1), POLICY)  # another pool's pass; gpu-1 is gone
    assert not due(timing, "gpu-1", T0 + 2 * AFTER)
    assert due(timing, "cpu-1", T0 + 2 * AFTER)
