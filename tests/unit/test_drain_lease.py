"""Leadership-safe drains: the intent names its holder and carries a lease; another process takes over
only an expired one, and the old holder stops before its next step. Drains run off the pass."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.core.snapshot import Node
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.drain_intent import INTENT_ANNOTATION, Intent
from rightsizer.runtime.drain_lease import IntentLease
from rightsizer.runtime.drain_runner import DrainRunner
from rightsizer.runtime.drain_steps import ExecutorSettings, Result
from tests.unit.fake_drain import Clock, FakeDrain
from tests.unit.planner_builders import gpu_node, gpu_pool, pod
from tests.unit.test_executor import drain_a0, world
from tests.unit.test_pool_pass import FAST, Cluster, evictions, manager

pytestmark = pytest.mark.unit

LEASE = timedelta(seconds=30)


def replica(name: str, edge: FakeDrain, provider: FakeProvider, clock: Clock) -> Executor:
    return Executor(
        edge,
        lambda pool: provider if pool == provider.pool else None,
        clock=clock,
        sleep=clock.sleep,
        settings=ExecutorSettings(drain_timeout=timedelta(minutes=10), poll_seconds=2, lease=LEASE),
        holder=name,
    )


def intent_on(edge: FakeDrain, node: str) -> Intent | None:
    raw = edge.nodes[node]["metadata"].get("annotations", {}).get(INTENT_ANNOTATION)
    return Intent.from_json(raw) if raw else None


def test_the_intent_names_its_holder_and_the_lease_is_renewed_while_it_waits() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 40  # 80 s of waiting for replacements: longer than the lease
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])
    leases: list[Intent | None] = []
    leader = replica("leader", edge, provider, clock)
    leader.sleep = lambda s: (clock.sleep(s), leases.append(intent_on(edge, "a-0")))  # type: ignore[func-returns-value]
    assert drain_a0(edge, leader) is Result.REMOVED
    held = [i for i in leases if i is not None]
    assert held and {i.holder for i in held} == {"leader"}
    assert all(i.lease_until is not None and i.lease_until > clock() - timedelta(seconds=82) for i in held)
    assert (
        max(i.lease_until for i in held if i.lease_until) - min(i.lease_until for i in held if i.lease_until)
        > LEASE
    )


def test_a_live_lease_is_left_to_its_holder_an_expired_one_is_taken_over_and_the_old_holder_stops() -> None:
    edge, clock = world(), Clock()
    edge.polls_until_ready = 10**6  # the replacements never come: the leader waits
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])
    leader, follower = replica("leader", edge, provider, clock), replica("follower", edge, provider, clock)
    taken: list[list[Result]] = []

    def paused(seconds: float) -> None:
        clock.sleep(seconds)
        if not taken:
            assert follower.recover() == [], "took over a live lease"
            assert intent_on(edge, "a-0").holder == "leader"  # type: ignore[union-attr]
            clock.sleep(LEASE.total_seconds() + 1)  # the leader is paused past its lease
            taken.append([o.result for o in follower.recover()])

    leader.sleep = paused
    assert drain_a0(edge, leader) is Result.TAKEN_OVER
    assert taken == [[Result.ROLLED_BACK]]
    assert edge.tainted() == set() and intent_on(edge, "a-0") is None
    assert provider.removed == [], "the node was removed after the take-over"
    counts = [call[1] for call in edge.calls if call[0] == "evict"]
    assert len(counts) == len(set(counts)), "a pod was evicted twice"


def test_an_intent_written_before_holders_existed_is_recovered() -> None:
    edge, clock = world(), Clock()
    old = Intent("underutilised", "a100", "draining", clock(), ("default/web-1",))
    edge.annotate("a-0", {INTENT_ANNOTATION: old.to_json()})
    provider = FakeProvider("a100", ["a-0", "a-1", "a-2"])
    assert [o.result for o in replica("new", edge, provider, clock).recover()] == [Result.ROLLED_BACK]


def test_a_pass_hands_the_drain_to_its_own_thread_and_a_later_pass_reports_it() -> None:
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1), pod("big-1", "a-1", gpus=4)
    )
    gate = threading.Event()
    edge.on_evict.append(lambda key: gate.wait(10))  # the eviction takes as long as the test says
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    pools.drains = DrainRunner(1)
    first = pools.run_pass("a100")  # returns while the drain is still evicting
    assert first.outcomes == () and pools.drains.busy() == {"a-0"}
    again = pools.run_pass("a100")  # recovery leaves the running drain's intent alone
    assert "DrainRecovered" not in [e.reason for e in again.events] and edge.tainted() == {"a-0"}
    gate.set()
    for _ in range(200):
        if not pools.drains.busy():
            break
        threading.Event().wait(0.05)
    reported = pools.run_pass("a100")
    assert [o.result for o in reported.outcomes] == [Result.REMOVED]
    assert "NodeRemoved" in [e.reason for e in reported.events]
    assert evictions(edge) == ["default/web-1"]


def wait_idle(runner: DrainRunner) -> None:
    for _ in range(200):
        if not runner.busy():
            return
        threading.Event().wait(0.05)
    raise AssertionError("the drain did not end")


def test_a_drain_that_failed_on_its_thread_backs_off_from_the_next_pass_on() -> None:
    edge = FakeDrain(
        gpu_node("a-0"), gpu_node("a-1"), pod("web-1", "a-0", gpus=1), pod("big-1", "a-1", gpus=4)
    )
    edge.polls_until_ready = 10**6  # the replacement never becomes Ready: the drain times out
    pools = manager(
        Cluster(edge, gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, **FAST)),
        Clock(),
        {"a100": FakeProvider("a100", ["a-0", "a-1"])},
    )
    pools.drains = DrainRunner(1)
    pools.run_pass("a100")
    wait_idle(pools.drains)
    edge.add(pod("web-2", "a-0", gpus=1))  # the replacement lands back on a-0
    reported = pools.run_pass("a100")
    assert [o.result for o in reported.outcomes] == [Result.TIMED_OUT]
    assert "next attempt in 1m" in next(e.message for e in reported.events if e.reason == "DrainTimedOut")
    wait_idle(pools.drains)
    pools.run_pass("a100")
    assert evictions(edge) == ["default/web-1"], "drained again during its back-off"


def test_a_renewal_never_writes_back_an_intent_another_process_changed_since_it_was_read() -> None:
    edge, clock = world(), Clock()
    mine = Intent("underutilised", "a100", "draining", clock(), holder="leader", lease_until=clock())
    edge.annotate("a-0", {INTENT_ANNOTATION: mine.to_json()})
    theirs = mine.renewed("follower", clock(), LEASE).to_json()
    read = edge.node

    def paused_after_reading(name: str) -> Node | None:
        seen = read(name)
        # The leader stops here; meanwhile the follower takes the expired intent over.
        edge.nodes[name]["metadata"]["annotations"][INTENT_ANNOTATION] = theirs
        return seen

    edge.node = paused_after_reading  # type: ignore[method-assign]
    lease = IntentLease(edge, "leader", clock, LEASE)
    assert lease.keep("a-0") is None, "the leader must see it lost the intent"
    assert edge.nodes["a-0"]["metadata"]["annotations"][INTENT_ANNOTATION] == theirs
