"""When a drain may consider an evicted pod replaced: counted from the pods themselves, with
Kubernetes' availability rule (Ready for longer than minReadySeconds), never from a controller
status that may still count the evicted pod."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.adapters.node_drain import replicas_serving

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def replica(
    name: str,
    node: str | None,
    *,
    ready_since: timedelta | None = timedelta(minutes=5),
    phase: str = "Running",
    owner: str = "slow-abc",
    deleting: bool = False,
) -> dict[str, Any]:
    conditions = []
    if ready_since is not None:
        since = (NOW - ready_since).isoformat().replace("+00:00", "Z")
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": since})
    meta: dict[str, Any] = {
        "name": name,
        "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T11:59:59Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": conditions},
    }


def count(pods: list[dict[str, Any]], min_ready: int) -> tuple[int, int]:
    return replicas_serving(pods, "ReplicaSet", "slow-abc", "drained", min_ready_seconds=min_ready, now=NOW)


def test_a_replacement_ready_for_a_moment_is_running_but_not_yet_available() -> None:
    pods = [
        replica("slow-old", "drained", deleting=True),
        replica("slow-new", "other", ready_since=timedelta(0)),
    ]
    assert count(pods, min_ready=40) == (1, 0)


def test_a_replacement_ready_longer_than_min_ready_seconds_is_available() -> None:
    assert count([replica("slow-new", "other", ready_since=timedelta(seconds=41))], min_ready=40) == (1, 1)


def test_without_min_ready_seconds_ready_is_available() -> None:
    assert count([replica("slow-new", "other", ready_since=timedelta(0))], min_ready=0) == (1, 1)


@pytest.mark.parametrize(
    "pod",
    [
        replica("on-the-drained-node", "drained"),
        replica("pending", None, ready_since=None, phase="Pending"),
        replica("terminating", "other", deleting=True),
        replica("someone-elses", "other", owner="other-rs"),
        replica("not-ready", "other", ready_since=None),
    ],
    ids=lambda p: p["metadata"]["name"],
)
def test_pods_that_do_not_count_as_replacements(pod: dict[str, Any]) -> None:
    assert count([pod], min_ready=0) == (0, 0)
