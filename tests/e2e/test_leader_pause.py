"""Two replicas with kopf peering; the leader is paused (SIGSTOP) in the middle of a drain, the other
takes over and rolls the drain back, then the first comes back (SIGCONT): it stops because the intent
is no longer its own. No node is deleted twice, no pod evicted twice, no node is left tainted.

Both operators run as the chart's ServiceAccount through the API proxy (tests/support/apiproxy.py),
which counts every eviction and node deletion either of them made. The movers' pod template carries a
scheduling gate (lifted by hand for the first pods), so the replacements of evicted pods stay Pending
and the drain waits for them until the test lifts the gate: the leader is paused in that wait.

How long the takeover takes is kopf's peering: a replica keeps its priority until its last keep-alive
plus the peering lifetime (kopf's default, 60 s) has passed; the follower sleeps until exactly then
and resumes. The paused leader no longer renews the drain intent's lease (`--intent-lease 10`): the new
leader's first pass after it ran out claims the intent and rolls the drain back.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from tests.support.apiproxy import ApiProxy, operator_proxy
from tests.support.chart import SESSION_IDENTITY
from tests.support.cluster import Cluster, wait_for
from tests.support.fleet import DISRUPTED, Fleet, all_available, deployments_summary, gpu_app, operator_args
from tests.support.operator_process import OperatorProcess, wait_passes

pytestmark = pytest.mark.e2e

INTENT = "rightsizer.io/disruption-intent"
GATE = "rightsizer.io/test-hold"
EVICTION = r"/pods/(?P<pod>[^/]+)/eviction$"
MOVERS = ("mover-a", "mover-b")
# kopf's peering lifetime (not configurable through our flags): the longest a paused leader keeps its
# priority after its last keep-alive. The takeover is bounded by it, the lease and a few passes.
PEERING_LIFETIME = 60
TAKEOVER_TIMEOUT = PEERING_LIFETIME + 60


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiProxy]:
    with operator_proxy(cluster, tmp_path) as running:
        yield running


@pytest.fixture
def peering(cluster: Cluster) -> Iterator[str]:
    # The chart lets its ServiceAccount use its own peering object only.
    name = SESSION_IDENTITY.get(cluster.kubeconfig).peering_name
    yield name
    cluster.kubectl("delete", "clusterkopfpeering", name, "--ignore-not-found")


def pods(cluster: Cluster, namespace: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items)


def ungate(cluster: Cluster, namespace: str) -> None:
    for pod in pods(cluster, namespace):
        if pod.spec.scheduling_gates and not pod.metadata.deletion_timestamp:
            patch = '[{"op": "remove", "path": "/spec/schedulingGates"}]'
            cluster.kubectl("patch", "pod", pod.metadata.name, "-n", namespace, "--type=json", "-p", patch)


def gated(cluster: Cluster, namespace: str) -> list[str]:
    return [p.metadata.name for p in pods(cluster, namespace) if p.spec.scheduling_gates]


def running_on(cluster: Cluster, namespace: str) -> dict[str, str]:
    """name -> node of Running pods not being deleted."""
    return {
        p.metadata.name: p.spec.node_name
        for p in pods(cluster, namespace)
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


def intent(fleet: Fleet, node: str) -> dict[str, str] | None:
    raw = (fleet.core.read_node(node).metadata.annotations or {}).get(INTENT)
    return dict(json.loads(raw)) if raw else None


def node_names(fleet: Fleet) -> set[str]:
    return {n.metadata.name for n in fleet.nodes("a100")}


def evictions(proxy: ApiProxy, namespace: str) -> Counter[str]:
    """Evictions that reached the API server, per pod, from both replicas."""
    records = proxy.requests("POST", rf"/namespaces/{namespace}{EVICTION}")
    return Counter(r.path.split("/")[-2] for r in records if r.forwarded)


def node_deletions(proxy: ApiProxy, node: str) -> int:
    return proxy.count("DELETE", rf"^/api/v1/nodes/{node}$")


def node_removed_events(cluster: Cluster, node: str) -> int:
    found = client.CoreV1Api(cluster.api).list_event_for_all_namespaces(field_selector="reason=NodeRemoved")
    return sum(1 for e in found.items if e.involved_object.name == node)


def set_min_nodes(cluster: Cluster, pool: str, count: int) -> None:
    patch = json.dumps({"spec": {"minNodes": count}})
    cluster.kubectl("patch", "gpunodepools", pool, "--type=merge", "-p", patch)


def replica(
    cluster: Cluster, namespace: str, proxy: ApiProxy, args: tuple[str, ...]
) -> AbstractContextManager[OperatorProcess]:
    """One replica with peering, as the chart's ServiceAccount through the proxy."""
    return OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=args, standalone=False,
        identity=proxy.kubeconfig, cluster_wide=True,
    )  # fmt: skip


@contextmanager
def paused(op: OperatorProcess) -> Iterator[None]:
    """SIGSTOP the operator; it is always continued again, also when the test fails meanwhile."""
    op.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        op.proc.send_signal(signal.SIGCONT)


def test_a_leader_paused_mid_drain_stops_when_it_comes_back_after_another_took_over(
    cluster: Cluster, namespace: str, fleet: Fleet, proxy: ApiProxy, peering: str
) -> None:
    pool = fleet.pool("a100")
    keep, drain = f"{pool}-0", f"{pool}-1"
    # The movers run on the node to drain (the only node when they are scheduled) ...
    fleet.add_node(drain, A100_80GB_X8, pool)
    wait_for(lambda: fleet.ready(drain), timeout=60)
    for name in MOVERS:
        app = gpu_app(fleet, name, "a100", 1)
        app["spec"]["template"]["spec"]["schedulingGates"] = [{"name": GATE}]
        cluster.apply(app, namespace)
    wait_for(lambda: len(gated(cluster, namespace)) == len(MOVERS), timeout=60)
    ungate(cluster, namespace)
    wait_for(lambda: set(running_on(cluster, namespace).values()) == {drain}, timeout=90)
    # ... and a protected anchor keeps the other node, which has room for them.
    fleet.add_node(keep, A100_80GB_X8, pool)
    wait_for(lambda: fleet.ready(keep), timeout=60)
    protect = {"rightsizer.io/do-not-disrupt": "true"}
    cluster.apply(gpu_app(fleet, "anchor", "a100", 1, node=keep, annotations=protect), namespace)
    wait_for(
        lambda: len(running_on(cluster, namespace)) == len(MOVERS) + 1,
        timeout=90,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    originals = {name for name in running_on(cluster, namespace) if name.startswith(MOVERS)}

    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    args = (*operator_args(fleet), "--peering-name", peering)
    # Explicit priorities: the first leads while it is alive, so it leads again once it is back.
    with (
        replica(cluster, namespace, proxy, (*args, "--peering-priority", "200")) as first,
        replica(cluster, namespace, proxy, (*args, "--peering-priority", "100")) as second,
    ):

        def logs() -> str:
            return f"--- first:\n{first.log()[-3000:]}\n--- second:\n{second.log()[-3000:]}"

        def seen() -> str:
            return (
                f"nodes {sorted(node_names(fleet))}, tainted {fleet.tainted()}, "
                f"intent on {drain}: {intent(fleet, drain) if drain in node_names(fleet) else '(gone)'}\n"
                f"evictions {dict(evictions(proxy, namespace))}\n"
                f"{deployments_summary(cluster, namespace)}\n{logs()}"
            )

        # Mid-drain: both movers evicted, their replacements held Pending by the gate, the leader
        # waiting for them with the intent (phase draining) on the node.
        wait_for(
            lambda: (
                sum(evictions(proxy, namespace).values()) == len(MOVERS)
                and len(gated(cluster, namespace)) == len(MOVERS)
                and (intent(fleet, drain) or {}).get("phase") == "draining"
            ),
            timeout=120,
            interval=0.5,
            describe=seen,
        )
        held = intent(fleet, drain) or {}
        holder_pid = int(held["holder"].split("/")[1])
        assert holder_pid == first.proc.pid, f"the higher-priority replica should drain: {held}"
        assert fleet.tainted() == [drain]

        with paused(first):
            # From here on neither replica may remove a node until the test says so: the paused one
            # must come back to a node that is still there.
            set_min_nodes(cluster, pool, 2)
            # The follower takes over once the leader's peering entry expired, and rolls the drain
            # back (the lease ran out too): the node untainted, the intent gone.
            wait_for(
                lambda: (
                    f"DrainRolledBack: drain of {drain} was interrupted" in second.log()
                    and intent(fleet, drain) is None
                    and not fleet.tainted()
                ),
                timeout=TAKEOVER_TIMEOUT,
                describe=seen,
            )
            assert "DrainRolledBack" not in first.log()
            # The new leader passes over the pool and, held by minNodes, does nothing more.
            wait_passes(second, pool, 3)
            assert node_names(fleet) == {keep, drain}, seen()

        # Back: its drain re-reads the intent before its next step and stops without acting.
        taken_over = f"DrainTakenOver: drain of {drain} was taken over by another operator process"
        wait_for(lambda: taken_over in first.log(), timeout=60, describe=seen)
        # It leads again (its priority is higher); the follower pauses once more.
        wait_for(
            lambda: second.log().count("Pausing operations in favour of") >= 2, timeout=60, describe=logs
        )
        assert not fleet.tainted() and intent(fleet, drain) is None, seen()
        assert sum(evictions(proxy, namespace).values()) == len(MOVERS), seen()
        assert node_deletions(proxy, drain) == 0, seen()

        # Now let the node go: the leader removes it (it is empty; the Pending movers fit beside the
        # anchor), then the movers start there.
        set_min_nodes(cluster, pool, 0)
        wait_for(lambda: node_names(fleet) == {keep}, timeout=60, describe=seen)
        ungate(cluster, namespace)
        wait_for(
            lambda: (
                all_available(cluster, namespace)
                and set(running_on(cluster, namespace).values()) == {keep}
                and len(running_on(cluster, namespace)) == len(MOVERS) + 1
            ),
            timeout=90,
            describe=seen,
        )
        # Nothing more happens over a few passes of the leader.
        wait_passes(first, pool, 3)
        assert first.proc.poll() is None and second.proc.poll() is None, logs()

    evicted = evictions(proxy, namespace)
    assert set(evicted) == originals and max(evicted.values()) == 1, f"evictions per pod: {evicted}"
    assert node_deletions(proxy, drain) == 1, f"DELETE of node {drain}: {node_deletions(proxy, drain)}"
    assert node_removed_events(cluster, drain) == 1
    assert node_deletions(proxy, keep) == 0
    assert not [
        n.metadata.name
        for n in fleet.core.list_node(label_selector=f"rightsizer.io/pool={pool}").items
        if INTENT in (n.metadata.annotations or {}) or any(t.key == DISRUPTED for t in n.spec.taints or [])
    ]
