"""Protection rules, cron windows and disruption budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.core.budgets import (
    Mobility,
    NodeBudget,
    PodPolicy,
    allowed_disruptions,
    budget_active,
    budget_nodes,
    consolidation_due,
    node_block_reason,
    pod_disposition,
)
from rightsizer.core.cron import last_fire, parse_cron
from rightsizer.core.errors import InvalidSchedule
from rightsizer.core.snapshot import PodDisruptionBudget
from rightsizer.core.snapshot_parsing import snapshot_from_document
from tests.unit.planner_builders import gpu_node, kube_list, pod

pytestmark = pytest.mark.unit

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def parsed_pod(**kwargs: Any) -> Any:
    return snapshot_from_document(kube_list(pod("p-1", "n1", **kwargs))).pods[0]


def disposition(p: Any, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "policy": None,
        "pdbs": (),
        "allow_training": False,
        "allow_local_storage": False,
    }
    args.update(overrides)
    return pod_disposition(p, **args)


# -- pods ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "mobility"),
    [
        ({"rightsizer.io/do-not-disrupt": "true"}, Mobility.BLOCKS),
        ({"karpenter.sh/do-not-disrupt": "true"}, Mobility.BLOCKS),
        ({"karpenter.sh/do-not-disrupt": "True"}, Mobility.BLOCKS),
        ({"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}, Mobility.BLOCKS),
        ({"karpenter.sh/do-not-disrupt": "false"}, Mobility.MOVABLE),
        ({"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}, Mobility.MOVABLE),
        ({}, Mobility.MOVABLE),
    ],
)
def test_do_not_disrupt_variants(annotations: dict[str, str], mobility: Mobility) -> None:
    assert disposition(parsed_pod(annotations=annotations)).mobility is mobility


@pytest.mark.parametrize(
    ("kwargs", "mobility", "reason"),
    [
        ({"owner": None}, Mobility.BLOCKS, "bare pod"),
        ({"owner": "DaemonSet"}, Mobility.STAYS, "DaemonSet"),
        ({"owner": None, "annotations": {"kubernetes.io/config.mirror": "abc"}}, Mobility.STAYS, "mirror"),
        ({"owner": "StatefulSet"}, Mobility.MOVABLE, "movable"),
        ({"owner": "Job"}, Mobility.MOVABLE, "movable"),
        ({"owner": "PyTorchJob"}, Mobility.BLOCKS, "training"),
        ({"labels": {"rightsizer.io/workload-type": "Training"}}, Mobility.BLOCKS, "training"),
        ({"annotations": {"rightsizer.io/workload-type": "training"}}, Mobility.BLOCKS, "training"),
        ({"volumes": [{"name": "scratch", "emptyDir": {}}]}, Mobility.BLOCKS, "local storage"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/x"}}]}, Mobility.BLOCKS, "local storage"),
        ({"volumes": [{"name": "cfg", "configMap": {"name": "c"}}]}, Mobility.MOVABLE, "movable"),
        (
            {
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
            },
            Mobility.MOVABLE,
            "movable",
        ),
        (
            {
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes": "scratch"},
            },
            Mobility.MOVABLE,
            "movable",
        ),
        (
            {
                "affinity": {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "labelSelector": {"matchLabels": {"app": "db"}},
                                "topologyKey": "kubernetes.io/hostname",
                            }
                        ]
                    }
                }
            },
            Mobility.BLOCKS,
            "pod affinity",
        ),
    ],
)
def test_pod_protection_rules(kwargs: dict[str, Any], mobility: Mobility, reason: str) -> None:
    result = disposition(parsed_pod(**kwargs))
    assert result.mobility is mobility
    assert reason in result.reason


def test_terminating_pod_stays_without_blocking() -> None:
    document = kube_list(pod("p-1", "n1"))
    document["items"][0]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert disposition(snapshot_from_document(document).pods[0]).mobility is Mobility.STAYS


@pytest.mark.parametrize(
    ("options", "policy", "mobility"),
    [
        ({}, None, Mobility.BLOCKS),
        ({"allow_training": True}, None, Mobility.MOVABLE),
        ({}, PodPolicy(allow_disruption=True), Mobility.MOVABLE),
    ],
)
def test_training_pods_move_only_when_allowed(
    options: dict[str, Any], policy: PodPolicy | None, mobility: Mobility
) -> None:
    training = parsed_pod(gpus=1, labels={"rightsizer.io/workload-type": "Training"})
    assert disposition(training, policy=policy, **options).mobility is mobility


@pytest.mark.parametrize(
    ("policy", "mobility"),
    [
        (PodPolicy(protected=True), Mobility.BLOCKS),
        (PodPolicy(training=True), Mobility.BLOCKS),
        (PodPolicy(), Mobility.MOVABLE),
    ],
)
def test_gpu_workload_policies_protect_pods(policy: PodPolicy, mobility: Mobility) -> None:
    assert disposition(parsed_pod(gpus=1), policy=policy).mobility is mobility


def test_local_storage_option_allows_moves() -> None:
    p = parsed_pod(volumes=[{"name": "scratch", "emptyDir": {}}])
    assert disposition(p, allow_local_storage=True).mobility is Mobility.MOVABLE


@pytest.mark.parametrize(
    ("allowed", "count", "mobility"),
    [(0, 1, Mobility.BLOCKS), (1, 1, Mobility.MOVABLE), (3, 2, Mobility.BLOCKS)],
)
def test_pdb_at_limit_or_several_pdbs_block(allowed: int, count: int, mobility: Mobility) -> None:
    pdbs = tuple(PodDisruptionBudget("default", f"pdb-{i}", None, allowed) for i in range(count))
    assert disposition(parsed_pod(), pdbs=pdbs).mobility is mobility


@pytest.mark.parametrize(
    ("annotations", "taints", "unschedulable", "blocked"),
    [
        ({}, [], False, None),
        ({"karpenter.sh/do-not-disrupt": "true"}, [], False, "karpenter.sh/do-not-disrupt"),
        ({"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}, [], False, "scale-down-disabled"),
        ({}, [{"key": "rightsizer.io/disrupted", "effect": "NoSchedule"}], False, "already being disrupted"),
        ({}, [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}], False, "Karpenter is disrupting"),
        ({}, [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}], False, "not registered"),
        ({}, [], True, "cordoned"),
    ],
)
def test_node_level_protection(
    annotations: dict[str, str], taints: list[dict[str, str]], unschedulable: bool, blocked: str | None
) -> None:
    node = snapshot_from_document(
        kube_list(gpu_node("n1", annotations=annotations, taints=taints, unschedulable=unschedulable))
    ).nodes[0]
    reason = node_block_reason(node)
    if blocked is None:
        assert reason is None
    else:
        assert reason is not None and blocked in reason


# -- cron ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "when", "matches"),
    [
        ("* * * * *", MONDAY_10, True),
        ("0 10 * * *", MONDAY_10, True),
        ("0 9 * * *", MONDAY_10, False),
        ("*/15 * * * *", MONDAY_10.replace(minute=45), True),
        ("*/15 * * * *", MONDAY_10.replace(minute=50), False),
        ("0 9-17 * * 1-5", MONDAY_10, True),
        ("0 9-17 * * 1-5", MONDAY_10 + timedelta(days=5), False),  # Saturday
        ("0 10 * * 0,6", MONDAY_10 + timedelta(days=6), True),  # Sunday
        ("0 10 * * 7", MONDAY_10 + timedelta(days=6), True),  # 7 is Sunday too
        ("0 10 * * sat,SUN", MONDAY_10 + timedelta(days=5), True),
        ("0 10 2 * *", MONDAY_10, True),
        ("0 10 1 jan *", datetime(2026, 1, 1, 10, tzinfo=UTC), True),
        ("0 10 1-10/3 * *", MONDAY_10.replace(day=4), True),
        ("0 10 1-10/3 * *", MONDAY_10.replace(day=3), False),
        ("0 10 5/10 * *", MONDAY_10.replace(day=15), True),
        # Both day fields restricted: either matches (classic cron).
        ("0 10 15 * 1", MONDAY_10, True),
        ("0 10 15 * 2", MONDAY_10, False),
        ("@daily", MONDAY_10.replace(hour=0), True),
        ("@hourly", MONDAY_10.replace(minute=1), False),
        ("@weekly", (MONDAY_10 - timedelta(days=1)).replace(hour=0), True),
    ],
)
def test_cron_matches(expression: str, when: datetime, matches: bool) -> None:
    assert parse_cron(expression).matches(when) is matches


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "a * * * *",
    ],
)
def test_bad_cron_is_refused(expression: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_cron(expression)


@pytest.mark.parametrize(
    ("schedule", "duration", "now", "active"),
    [
        ("0 9 * * 1-5", timedelta(hours=8), MONDAY_10, True),
        ("0 9 * * 1-5", timedelta(hours=8), MONDAY_10.replace(hour=17), False),
        ("0 9 * * 1-5", timedelta(hours=8), MONDAY_10 + timedelta(days=5), False),
        ("0 9 * * 1-5", timedelta(hours=8), MONDAY_10.replace(hour=8, minute=59), False),
        ("0 9 * * 1-5", timedelta(hours=8), MONDAY_10.replace(hour=9), True),
        ("0 22 * * *", timedelta(hours=4), MONDAY_10.replace(hour=1), True),  # window across midnight
        ("0 0 1 * *", timedelta(days=3), datetime(2026, 3, 3, 23, 0, tzinfo=UTC), True),
        ("0 0 1 * *", timedelta(days=3), datetime(2026, 3, 4, 0, 1, tzinfo=UTC), False),
    ],
)
def test_cron_window(schedule: str, duration: timedelta, now: datetime, active: bool) -> None:
    assert budget_active(NodeBudget(nodes="0", schedule=schedule, duration=duration), now) is active


@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    offset_minutes=st.integers(0, 60 * 24 * 9),
)
def test_last_fire_agrees_with_a_minute_by_minute_scan(minute: int, hour: int, offset_minutes: int) -> None:
    schedule = parse_cron(f"{minute} {hour} * * 1,3,5")
    now = MONDAY_10 + timedelta(minutes=offset_minutes)
    after = now - timedelta(days=3)
    expected = None
    probe = now.replace(second=0, microsecond=0)
    while probe > after:
        if schedule.matches(probe):
            expected = probe
            break
        probe -= timedelta(minutes=1)
    assert last_fire(schedule, now, after) == expected


# -- budgets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "size", "expected"),
    [
        ("1", 10, 1),
        ("0", 10, 0),
        ("10%", 10, 1),
        ("10%", 5, 1),
        ("10%", 0, 0),
        ("25%", 10, 3),
        ("100%", 7, 7),
    ],
)
def test_budget_percentages_round_up(nodes: str, size: int, expected: int) -> None:
    assert budget_nodes(nodes, size) == expected


@pytest.mark.parametrize(
    ("budgets", "size", "disrupting", "now", "reason", "expected"),
    [
        ((), 30, 0, MONDAY_10, "Underutilized", 3),  # default 10%
        ((), 30, 2, MONDAY_10, "Underutilized", 1),  # nodes already disrupting count
        ((NodeBudget("1"),), 30, 0, MONDAY_10, "Empty", 1),
        ((NodeBudget("5"), NodeBudget("20%")), 30, 0, MONDAY_10, "Empty", 5),  # most restrictive
        ((NodeBudget("0", "0 9 * * 1-5", timedelta(hours=8)),), 30, 0, MONDAY_10, "Empty", 0),
        # Scheduled budgets exist but none is active: no limit.
        (
            (NodeBudget("0", "0 9 * * 1-5", timedelta(hours=8)),),
            30,
            0,
            MONDAY_10.replace(hour=20),
            "Empty",
            30,
        ),
        ((NodeBudget("0", reasons=("Underutilized",)),), 30, 0, MONDAY_10, "Empty", 30),
        ((NodeBudget("0", reasons=("Underutilized",)),), 30, 0, MONDAY_10, "Underutilized", 0),
    ],
)
def test_allowed_disruptions(  # noqa: PLR0917 - one column per table field
    budgets: tuple[NodeBudget, ...], size: int, disrupting: int, now: datetime, reason: str, expected: int
) -> None:
    assert allowed_disruptions(budgets, size, disrupting, now, reason) == expected


@pytest.mark.parametrize(
    ("after", "since", "due"),
    [
        (timedelta(minutes=10), MONDAY_10 - timedelta(minutes=11), True),
        (timedelta(minutes=10), MONDAY_10 - timedelta(minutes=9), False),
        (timedelta(0), MONDAY_10, True),
        (timedelta(minutes=10), None, True),  # no timestamps to go by
    ],
)
def test_consolidate_after(after: timedelta, since: datetime | None, due: bool) -> None:
    assert (consolidation_due(after, since, MONDAY_10) is None) is due
