"""The simulation's working state: nodes being emptied are no target, and a fork is independent."""

from __future__ import annotations

import pytest

from rightsizer.core.binpack import pod_constraints
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import gpu_node, kube_list, pod
from tests.unit.test_binpack import cluster, simulation

pytestmark = pytest.mark.unit


def test_a_suspended_node_is_no_target_until_resumed_even_while_its_pods_move() -> None:
    snapshot = cluster(
        gpu_node("a1"),
        gpu_node("a2"),
        pod("w-1", "a1", gpus=6),
        pod("w-2", "a2", gpus=4),
    )
    extra = snapshot_from_document(kube_list(pod("new-1", None, gpus=2)))
    sim = simulation(snapshot, extra)
    new = extra.pods[0]
    request, constraints = sim.space.request(new.requests), pod_constraints(new)
    assert sim.find(new, request, constraints) == 0  # most allocated: a1 has 2 GPUs free

    sim.suspend([0])
    assert sim.find(new, request, constraints) == 1
    moving = snapshot.pods[0]
    sim.release(0, sim.space.request(moving.requests), moving)  # a pod leaves the suspended node
    assert sim.find(new, request, constraints) == 1

    sim.resume([0])
    assert sim.find(new, request, constraints) == 1  # a1 is now empty: a2 is the fuller fit
    sim.reserve(0, sim.space.request(moving.requests), moving)
    assert sim.find(new, request, constraints) == 0


def test_a_fork_books_nothing_in_the_simulation_it_came_from() -> None:
    snapshot = cluster(gpu_node("a1"), gpu_node("a2"), pod("w-1", "a1", gpus=6))
    extra = snapshot_from_document(kube_list(pod("new-1", None, gpus=2)))
    sim = simulation(snapshot, extra)
    new = extra.pods[0]
    request, constraints = sim.space.request(new.requests), pod_constraints(new)
    assert sim.find(new, request, constraints) == 0

    other = sim.fork()
    other.reserve(0, request, new)
    other.suspend([1])
    other.remove_node(0)
    assert other.find(new, request, constraints) is None
    assert sim.find(new, request, constraints) == 0
    assert sim.residents[0] == [snapshot.pods[0]]
