"""The operator SIGKILLed at each step of a drain, then started again: it converges, no node is ever
tainted without the intent that explains it, no pod is evicted twice, no protected pod is touched.

The operator runs as the chart's ServiceAccount through the fault-injecting proxy
(tests/support/apiproxy.py), which holds the request of the step to kill it at (the first eviction,
the second eviction, the node's deletion) and counts every eviction across both runs. A held request
whose client died is never forwarded, so what reached the API server is exactly what the killed
operator had done.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.kwok_nodes import A100_80GB_X8
from tests.support.apiproxy import ApiProxy, Rule, operator_proxy
from tests.support.cluster import Cluster, wait_for
from tests.support.fleet import (
    Fleet,
    all_available,
    deployments_summary,
    gpu_app,
    operator_args,
    running_pods,
)
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

DISRUPTED = "rightsizer.io/disrupted"
INTENT = "rightsizer.io/disruption-intent"
EVICTION = r"/pods/(?P<pod>[^/]+)/eviction$"


@dataclass(frozen=True)
class Step:
    """Where the first operator is killed: the request it is held at, and what must be true then."""

    name: str
    hold: Callable[[ApiProxy, str, str], Rule]  # (proxy, namespace, drained node) -> rule
    evicted_before_kill: int
    phase: str


STEPS = [
    Step(
        "after-taint-before-evictions",
        lambda proxy, ns, node: proxy.delay("POST", rf"/namespaces/{ns}{EVICTION}", 120),
        evicted_before_kill=0,
        phase="draining",
    ),
    Step(
        "after-some-evictions",
        lambda proxy, ns, node: proxy.delay("POST", rf"/namespaces/{ns}{EVICTION}", 120, skip=1),
        evicted_before_kill=1,
        phase="draining",
    ),
    Step(
        "after-removing-intent-before-removal",
        lambda proxy, ns, node: proxy.delay("DELETE", rf"^/api/v1/nodes/{node}$", 120),
        evicted_before_kill=2,
        phase="removing",
    ),
]


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiProxy]:
    with operator_proxy(cluster, tmp_path) as running:
        yield running


INTENT_PATH = "/metadata/annotations/" + INTENT.replace("~", "~0").replace("/", "~1")


def unexplained_taints(proxy: ApiProxy, node: str) -> list[str]:
    """Replays every write the operator made to `node`, in order, across both runs: each time the
    node carries the disruption taint it must also carry the intent that explains it (else a dead
    operator could leave it tainted forever, and nobody would know why)."""
    intent = tainted = False
    seen: list[str] = []
    for write in proxy.requests("PATCH", rf"^/api/v1/nodes/{node}$"):
        if not (write.forwarded and 200 <= write.status < 300):
            continue
        body = json.loads(write.body)
        if isinstance(body, list):
            # A JSON Patch: the lease's compare-and-swap of the intent, which it only ever replaces.
            if any(op.get("op") == "replace" and op.get("path", "").endswith(INTENT_PATH) for op in body):
                intent = True
            continue
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if INTENT in annotations:
            intent = annotations[INTENT] is not None
        if "taints" in (body.get("spec") or {}):
            tainted = any(t.get("key") == DISRUPTED for t in body["spec"]["taints"] or [])
        if tainted and not intent:
            seen.append(write.body.decode()[:200])
    return seen


def intent_phase(fleet: Fleet, node: str) -> str | None:
    raw = (fleet.core.read_node(node).metadata.annotations or {}).get(INTENT)
    return str(json.loads(raw)["phase"]) if raw else None


def evictions(proxy: ApiProxy, namespace: str, *, forwarded: bool) -> Counter[str]:
    pattern = rf"/namespaces/{namespace}{EVICTION}"
    records = [r for r in proxy.requests("POST", pattern) if r.forwarded or not forwarded]
    return Counter(r.path.split("/")[-2] for r in records)


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_operator_killed_mid_drain_converges_without_double_eviction_or_unexplained_taint(
    cluster: Cluster, namespace: str, fleet: Fleet, proxy: ApiProxy, step: Step
) -> None:
    pool = fleet.pool("a100")
    keep, drain = f"{pool}-0", f"{pool}-1"
    # Two movable pods on the node to drain (it is the only node when they are scheduled) ...
    fleet.add_node(drain, A100_80GB_X8, pool)
    wait_for(lambda: fleet.ready(drain), timeout=60)
    for name in ("mover-a", "mover-b"):
        cluster.apply(gpu_app(fleet, name, "a100", 1), namespace)
    wait_for(lambda: len(running_pods(cluster, namespace)) == 2, timeout=90)
    # ... and on the node that stays, two protected ones: a PodDisruptionBudget and do-not-disrupt.
    fleet.add_node(keep, A100_80GB_X8, pool)
    wait_for(lambda: fleet.ready(keep), timeout=60)
    cluster.apply(gpu_app(fleet, "guarded", "a100", 1, node=keep), namespace)
    pdb = {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    cluster.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded"},
            "spec": pdb,
        },
        namespace,
    )
    protect = {"rightsizer.io/do-not-disrupt": "true"}
    cluster.apply(gpu_app(fleet, "pinned", "a100", 1, node=keep, annotations=protect), namespace)
    policy = client.PolicyV1Api(cluster.api)
    wait_for(
        lambda: (
            len(running_pods(cluster, namespace)) == 4
            and policy.read_namespaced_pod_disruption_budget("guarded", namespace).status.current_healthy == 1
        ),
        timeout=90,
        describe=lambda: deployments_summary(cluster, namespace),
    )
    before = running_pods(cluster, namespace)
    assert {node for name, (_, node) in before.items() if name.startswith("mover-")} == {drain}
    protected = {name: pod for name, pod in before.items() if name.startswith(("guarded-", "pinned-"))}

    fleet.node_pool("a100", A100_80GB_X8, 3.0)
    args = operator_args(fleet)
    held = step.hold(proxy, namespace, drain)
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=args,
        identity=proxy.kubeconfig, cluster_wide=True,
    ) as first:  # fmt: skip
        held.wait(timeout=120)
        assert intent_phase(fleet, drain) == step.phase
        assert fleet.tainted() == [drain]
        assert sum(evictions(proxy, namespace, forwarded=True).values()) == step.evicted_before_kill
        first.proc.kill()  # SIGKILL: no chance to clean up
        first.proc.wait(timeout=10)
    wait_for(lambda: held.held == 0, timeout=10)  # its client is gone: the held request is dropped
    proxy.clear()
    assert fleet.tainted() == [drain], "the kill left the drain half-way"

    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, extra_args=args,
        identity=proxy.kubeconfig, cluster_wide=True,
    ) as second:  # fmt: skip

        def converged() -> bool:
            nodes = fleet.nodes("a100")
            return (
                [n.metadata.name for n in nodes] == [keep]
                and not fleet.tainted()
                and not any(INTENT in (n.metadata.annotations or {}) for n in nodes)
                and all_available(cluster, namespace)
                and len(running_pods(cluster, namespace)) == 4
            )

        wait_for(
            converged,
            timeout=150,
            describe=lambda: f"{deployments_summary(cluster, namespace)}\n{second.log()[-3000:]}",
        )
    assert proxy.count("PATCH", rf"^/api/v1/nodes/{drain}$") >= 2, "the node's writes were seen"
    assert not unexplained_taints(proxy, drain), "a write left the node tainted without an intent"
    evicted = evictions(proxy, namespace, forwarded=True)
    assert evicted and max(evicted.values()) == 1, f"evictions per pod across both runs: {evicted}"
    asked = evictions(proxy, namespace, forwarded=False)
    assert not [p for p in asked if p in protected], f"evictions asked for protected pods: {asked}"
    after = running_pods(cluster, namespace)
    for name, pod in protected.items():
        assert after.get(name) == pod, f"protected pod {name} was moved or evicted"
    assert {node for _, node in after.values()} == {keep}
