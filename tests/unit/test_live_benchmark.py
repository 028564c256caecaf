"""The live benchmark's arithmetic and fleet, without a cluster: audit-log parsing, passes, histogram
quantiles, counter deltas, baselines, and a fleet that schedules."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from benchmarks import live_fleet as fleet
from benchmarks import live_measure as m
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.api.v1alpha1 import GPUNodePoolSpec, GPUWorkloadSpec
from rightsizer.devcluster.scenario_rules import load_scenario

pytestmark = pytest.mark.unit

USER = "system:serviceaccount:rightsizer-bench:gpu-rightsizer"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def event(
    audit_id: str,
    verb: str,
    at: float,
    *,
    resource: str | None = "pods",
    group: str = "",
    sub: str | None = None,
    stage: str = "ResponseComplete",
    done: float | None = None,
    user: str = USER,
    uri: str = "/api/v1/pods",
    name: str = "",
) -> str:
    body: dict[str, object] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z"),
        "stageTimestamp": (T0 + timedelta(seconds=done if done is not None else at + 0.01))
        .isoformat()
        .replace("+00:00", "Z"),
    }
    if resource is not None:
        ref: dict[str, str] = {"resource": resource, "namespace": "bench-000", "apiVersion": "v1"}
        if group:
            ref["apiGroup"] = group
        if sub:
            ref["subresource"] = sub
        if name:
            ref["name"] = name
        body["objectRef"] = ref
    return json.dumps(body)


def target_get(audit_id: str, at: float, workload: int = 0) -> str:
    return event(audit_id, "get", at, resource="deployments", group="apps", name=f"svc-{workload}")


# -- audit log ---------------------------------------------------------------------------------------


def test_one_request_per_audit_id_even_for_a_watch_logged_twice() -> None:
    lines = [
        event("w1", "watch", 0, stage="ResponseStarted"),
        event("g1", "get", 1, resource="deployments", group="apps"),
        event("w1", "watch", 0, stage="ResponseComplete", done=300),
    ]
    requests = m.parse_audit(lines, USER)
    assert [(r.audit_id, r.kind) for r in requests] == [
        ("w1", ("watch", "pods")),
        ("g1", ("get", "deployments")),
    ]
    assert requests[0].completed == T0 + timedelta(seconds=300)


def test_requests_of_other_users_and_unreadable_lines_are_skipped() -> None:
    lines = [
        event("a", "get", 0, user="system:kube-scheduler"),
        '{"kind": "Event", "auditID": "half-writ',
        "",
        event("b", "list", 1),
    ]
    assert [r.audit_id for r in m.parse_audit(lines, USER)] == ["b"]


@pytest.mark.parametrize(
    ("resource", "group", "sub", "expected"),
    [
        ("pods", "", None, "pods"),
        ("deployments", "apps", "scale", "deployments/scale"),
        ("gpuworkloads", "rightsizer.io", "status", "gpuworkloads.rightsizer.io/status"),
        ("horizontalpodautoscalers", "autoscaling", None, "horizontalpodautoscalers"),
        (None, "", None, "/apis/apps/v1"),
    ],
)
def test_resource_names_say_group_and_subresource(
    resource: str | None, group: str, sub: str | None, expected: str
) -> None:
    line = event("x", "get", 0, resource=resource, group=group, sub=sub, uri="/apis/apps/v1?timeout=32s")
    assert m.parse_audit([line], USER)[0].resource == expected


# -- passes ------------------------------------------------------------------------------------------


def two_passes_of_three_workloads() -> list[m.ApiRequest]:
    lines = [event("watch", "watch", -5, stage="ResponseStarted")]
    for n, start in enumerate((0.0, 30.0)):
        for w in range(3):
            at = start + w * 0.5
            lines.append(target_get(f"s{n}{w}", at, w))
            lines.append(
                event(
                    f"p{n}{w}",
                    "patch",
                    at + 0.2,
                    resource="gpuworkloads",
                    group="rightsizer.io",
                    sub="status",
                )
            )
    return m.parse_audit(lines, USER)


def test_every_n_target_reads_make_one_pass_ending_with_its_last_answered_request() -> None:
    passes = m.find_passes(two_passes_of_three_workloads(), workloads=3, interval=30)
    assert [p.start for p in passes] == [T0, T0 + timedelta(seconds=30)]
    assert passes[0].seconds == pytest.approx(1.21)  # last patch received at 1.2 s, answered 10 ms later
    assert passes[0].requests == {
        ("get", "deployments"): 3,
        ("patch", "gpuworkloads.rightsizer.io/status"): 3,
    }


def test_an_incomplete_pass_is_not_a_pass() -> None:
    requests = two_passes_of_three_workloads()[:-2]  # the second pass lost its last reconciliation
    assert len(m.find_passes(requests, workloads=3, interval=30)) == 1


def test_requests_per_pass_are_averaged_and_watches_found() -> None:
    requests = two_passes_of_three_workloads()
    passes = m.find_passes(requests, workloads=3, interval=30)
    assert m.per_pass(passes)[("get", "deployments")] == 3
    assert m.watched_kinds(requests) == ["pods"]


def test_gaps_between_a_workload_s_reconciliations() -> None:
    gaps = m.reconcile_gaps(two_passes_of_three_workloads())
    assert gaps == [30.0, 30.0, 30.0]
    assert m.percentile(gaps, 0.5) == 30.0
    assert math.isnan(m.percentile([], 0.5))


def test_list_per_workload_baseline_adds_one_list_per_indexed_kind_and_workload() -> None:
    ours = {("get", "deployments/scale"): 1000.0, ("patch", "pods"): 10.0, ("watch", "pods"): 0.5}
    assert m.list_per_workload_baseline(ours, workloads=1000, kinds=6) == 1010 + 6000


def test_pass_spans_from_a_sampled_counter() -> None:
    samples = [(0.0, 0.0), (1.0, 0.0), (2.0, 40.0), (3.0, 100.0), (30.0, 100.0), (31.0, 150.0), (33.0, 200.0)]
    # pass 1: last seen at 0 at t=1, all 100 done at t=3; pass 2: last seen at 100 at t=30, 200 at t=33
    assert m.counter_pass_spans(samples, 100) == [2.0, 3.0]


# -- /metrics arithmetic -----------------------------------------------------------------------------


def histogram_text(values: list[float]) -> str:
    registry = CollectorRegistry()
    h = Histogram("op_seconds", "test", buckets=(0.01, 0.1, 1.0), registry=registry)
    for v in values:
        h.observe(v)
    return generate_latest(registry).decode()


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    expo = parse_exposition(histogram_text([0.005] * 50 + [0.05] * 50))
    cumulative = m.buckets(expo, "op_seconds")
    assert cumulative == [(0.01, 50), (0.1, 100), (1.0, 100), (math.inf, 100)]
    assert m.quantile(0.5, cumulative) == pytest.approx(0.01)
    assert m.quantile(0.99, cumulative) == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert m.quantile(0.25, cumulative) == pytest.approx(0.005)


def test_quantile_of_an_empty_histogram_is_nan_and_of_the_inf_bucket_the_last_bound() -> None:
    assert math.isnan(m.quantile(0.5, [(1.0, 0), (math.inf, 0)]))
    assert m.quantile(0.99, [(1.0, 1), (math.inf, 10)]) == 1.0


def test_bucket_delta_keeps_what_was_observed_between_scrapes() -> None:
    before = m.buckets(parse_exposition(histogram_text([0.005, 0.5])), "op_seconds")
    after = m.buckets(parse_exposition(histogram_text([0.005, 0.5, 0.05, 0.05])), "op_seconds")
    assert m.bucket_delta(before, after) == [(0.01, 0), (0.1, 2), (1.0, 2), (math.inf, 2)]


def test_counter_deltas_between_boundaries_use_the_last_sample_before_each() -> None:
    samples = [(0.0, 10.0), (5.0, 12.0), (29.0, 12.0), (31.0, 14.0), (60.0, 14.0)]
    assert m.deltas(samples, [1.0, 30.0, 61.0]) == [2.0, 2.0]
    with pytest.raises(ValueError, match="no sample"):
        m.at_or_before(samples, -1)


def test_value_sums_matching_series() -> None:
    expo = parse_exposition(
        'prometheus_http_requests_total{code="200",handler="/api/v1/query"} 7\n'
        'prometheus_http_requests_total{code="400",handler="/api/v1/query"} 1\n'
        'prometheus_http_requests_total{code="200",handler="/metrics"} 99\n'
    )
    assert m.value(expo, "prometheus_http_requests_total", handler="/api/v1/query") == 8


def test_table_aligns_columns() -> None:
    text = m.table([m.Row("pass (s)", "8.2", target="< 30 s: met"), m.Row("queries", "2", "1,000", "0.002")])
    lines = text.splitlines()
    assert lines[0].split() == ["rightsizer", "baseline", "ratio", "target"]
    assert lines[1].startswith("pass (s)") and lines[1].endswith("< 30 s: met")
    right_edge = lines[0].index("rightsizer") + len("rightsizer")
    assert lines[1].index("8.2") + len("8.2") == right_edge  # numbers right-aligned under the header


# -- the fleet -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.02])
def test_the_fleet_schedules_with_room_for_the_probe_to_scale(scale: float) -> None:
    shape = fleet.Shape.scaled(scale)
    for requested, offered in fleet.capacity_check(shape).values():
        assert requested <= offered * 0.9
    assert len(fleet.node_manifests(shape)) == shape.nodes
    assert len(fleet.workloads(shape)) == shape.workloads


def test_full_scale_is_the_issue_s_fleet() -> None:
    shape = fleet.Shape.scaled(1.0)
    assert (shape.nodes, shape.workloads, shape.pods) == (500, 1000, 5000)
    assert sum(offered for _, offered in fleet.capacity_check(shape).values()) == 6400


def test_every_manifest_is_valid_for_the_operator() -> None:
    objects = fleet.fleet(fleet.Shape.scaled(0.1))
    for w in objects["workloads"]:
        GPUWorkloadSpec.model_validate(w["spec"])
    for p in objects["pools"]:
        GPUNodePoolSpec.model_validate(p["spec"])
    (scenario,) = objects["scenarios"]
    rules = load_scenario(scenario["data"]["scenario.yaml"], "test", namespace="bench-000").rules
    assert rules[0].util == fleet.PROBE_START_UTIL


def test_the_probe_is_enforced_inference_driven_by_its_rule_and_the_rest_steady() -> None:
    ws = fleet.workloads(fleet.Shape.scaled(1.0))
    probe = ws[fleet.PROBE_INDEX]
    assert probe.enforce and not probe.training and probe.util is None
    inference = [w for w in ws[1:] if not w.training]
    assert all(54 <= (w.util or 0) <= 66 for w in inference)  # inside 10% of the 60% target
    assert sum(w.training for w in ws) == 100


def test_the_audit_policy_logs_only_the_operator() -> None:
    policy = yaml.safe_load(yaml.safe_dump(fleet.audit_policy()))
    assert policy["rules"][0] == {"level": "Metadata", "users": [fleet.OPERATOR_USER]}
    assert policy["rules"][-1] == {"level": "None"}
    assert fleet.OPERATOR_USER == USER
