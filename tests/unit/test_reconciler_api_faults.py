"""The workload pass when the API server fails part-way: what was done is still reported."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rightsizer.adapters.kube_retry import KubeApiUnavailable
from rightsizer.devcluster.memory_cluster import MemoryCluster
from rightsizer.runtime import workloads

pytestmark = pytest.mark.unit


def unavailable(*_: Any, **__: Any) -> None:
    raise KubeApiUnavailable("PATCH deployments/chat", 6, 19.5, "503 Service Unavailable")


def test_a_scale_is_reported_even_when_the_annotations_after_it_cannot_be_written() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=90)
    c.workload("ml", "chat")
    c.targets.annotate_target = unavailable  # type: ignore[method-assign]
    c.targets.annotate_pod = unavailable  # type: ignore[method-assign]
    result = c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 3
    # Failing the pass here would lose these: the next pass would find 3 replicas and nothing to do.
    assert result.status["lastDecision"]["action"] == "ScaleUp"
    assert [e.reason for e in result.events] == ["ScaleUp"]
    assert '"scaleEvents":[[' in result.annotations["rightsizer.io/scaling-state"]
    assert c.telemetry.errors.value("annotations") == 1


@pytest.fixture
def slow_target_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The target read takes as long as the test says (retries waiting out an outage)."""
    clock = [0.0]
    monkeypatch.setattr(
        workloads,
        "time",
        SimpleNamespace(
            monotonic=lambda: clock[0],
            perf_counter=workloads.time.perf_counter,
            thread_time=workloads.time.thread_time,
        ),
    )
    yield clock


def test_a_pass_that_waited_for_the_api_server_decides_as_of_when_it_reads_the_metrics(
    slow_target_read: list[float],
) -> None:
    c = MemoryCluster(interval=2)  # samples more than two intervals off are refused
    c.deployment("ml", "chat", 2, util=None)
    c.workload("ml", "chat")
    start = c.now
    read_scale = c.targets.read_scale

    def read_after_retries(namespace: str, ref: Any) -> Any:
        slow_target_read[0] += 8  # 8 s of retries; Prometheus scraped meanwhile
        c.now = start + timedelta(seconds=8)
        for i in range(2):
            c.metrics.record("ml", f"chat-{i}", 90, at=c.now)
        return read_scale(namespace, ref)

    c.targets.read_scale = read_after_retries  # type: ignore[method-assign]
    obj = c.objects[("ml", "chat")]
    result = c.reconciler.reconcile(obj, now=start, view=c.view())
    assert result.status["lastDecision"]["action"] == "ScaleUp", result.status["lastDecision"]
    assert c.replicas("ml", "chat") == 3


def test_a_pass_handed_a_stale_object_still_knows_the_scale_it_made_and_does_not_repeat_it() -> None:
    c = MemoryCluster()
    c.deployment("ml", "chat", 2, util=90)
    one_per_minute = {"scaleUp": {"maxStep": 1, "periodSeconds": 60, "stabilizationWindowSeconds": 0}}
    c.workload("ml", "chat", behavior=one_per_minute)
    before_first_pass = copy.deepcopy(c.objects[("ml", "chat")])
    c.reconcile("ml", "chat")
    assert c.replicas("ml", "chat") == 3
    # The next pass starts before the watch delivered the first pass's own patch: kopf hands it the
    # object as it was. Busier than ever, but one step per minute was allowed and taken.
    c.set_pods("ml", "chat", 3, util=90)
    c.now += timedelta(seconds=2)
    result = c.reconciler.reconcile(before_first_pass, now=c.now, view=c.view())
    assert c.replicas("ml", "chat") == 3, result.status["lastDecision"]
    assert '"scaleEvents":[[' in result.annotations["rightsizer.io/scaling-state"]


def test_a_newer_scaling_state_on_the_object_wins_over_what_this_process_wrote() -> None:
    memory = workloads.ScalingStateMemory()
    ours = '{"recommendations":[["2026-11-25T12:00:00Z",3]],"scaleEvents":[["2026-11-25T12:00:00Z",1]]}'
    later = '{"recommendations":[["2026-11-25T12:05:00Z",4]],"scaleEvents":[]}'
    memory.wrote(("ml", "chat"), ours)
    assert memory.current(("ml", "chat"), None) == ours
    assert memory.current(("ml", "chat"), ours.replace("12:00", "11:59")) == ours
    assert memory.current(("ml", "chat"), later) == later  # e.g. written by the replica that took over
    memory.forget(("ml", "chat"))
    assert memory.current(("ml", "chat"), None) is None
