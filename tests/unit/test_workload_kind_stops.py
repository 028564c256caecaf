"""The kinds stopped by an annotation or with no replica count of their own: KServe's
InferenceService, Kubeflow's Notebook and TrainJob, KubeRay's RayJob. Where their pods are, how each is
stopped and resumed, who else scales it, and what the operator does with a value it cannot read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from rightsizer.adapters.workload_kinds import MERGE_PATCH, ReplicasVia, Suspend, kind_for

ISVC = kind_for("serving.kserve.io", "InferenceService")
NOTEBOOK = kind_for("kubeflow.org", "Notebook")
TRAINJOB = kind_for("trainer.kubeflow.org", "TrainJob")
RAYJOB = kind_for("ray.io", "RayJob")
NOW = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)


def with_annotations(annotations: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}}


@pytest.mark.parametrize(
    ("adapter", "labels"),
    [
        (ISVC, ("serving.kserve.io/inferenceservice=w",)),
        (NOTEBOOK, ("notebook-name=w",)),
        (TRAINJOB, ("jobset.sigs.k8s.io/jobset-name=w",)),
    ],
)
def test_pods_are_found_by_the_label_their_controller_sets(adapter: Any, labels: tuple[str, ...]) -> None:
    assert adapter.pod_selectors("w", "app=w", {}) == labels


def test_a_rayjobs_pods_are_those_of_the_raycluster_named_in_its_status() -> None:
    job = {"status": {"rayClusterName": "w-x7k2p"}}
    assert RAYJOB.pod_selectors("w", "", job) == ("ray.io/cluster=w-x7k2p",)


@pytest.mark.parametrize("status", [{}, {"rayClusterName": ""}, {"rayClusterName": 3}])
def test_a_rayjob_without_a_cluster_yet_has_no_pods(status: dict[str, Any]) -> None:
    assert RAYJOB.pod_selectors("w", "", {"status": status}) == ("",)


@pytest.mark.parametrize("adapter", [ISVC, NOTEBOOK, TRAINJOB, RAYJOB])
def test_none_of_them_has_a_replica_count_the_operator_sets(adapter: Any) -> None:
    assert adapter.scalable({"spec": {"replicas": 3}}) is ReplicasVia.NONE


@pytest.mark.parametrize(
    ("annotations", "can_suspend", "suspended"),
    [
        ({}, True, False),
        ({"serving.kserve.io/stop": "true"}, True, True),
        ({"serving.kserve.io/stop": "True"}, True, True),
        ({"serving.kserve.io/stop": "false"}, True, False),
        # Neither true nor false: left alone, never taken as running (and stopped again) or as stopped.
        ({"serving.kserve.io/stop": "soon"}, False, False),
        ({"serving.kserve.io/stop": ""}, False, False),
    ],
)
def test_an_inferenceservice_is_stopped_by_kserves_stop_annotation(
    annotations: dict[str, str], can_suspend: bool, suspended: bool
) -> None:
    obj = with_annotations(annotations)
    assert (ISVC.can_suspend(obj), ISVC.suspended(obj)) == (can_suspend, suspended)


def test_stopping_an_inferenceservice_sets_the_annotation_and_resuming_removes_it() -> None:
    stop = {"metadata": {"annotations": {"serving.kserve.io/stop": "true"}}}
    resume = {"metadata": {"annotations": {"serving.kserve.io/stop": None}}}
    assert ISVC.suspend_patch(True, NOW) == (stop, MERGE_PATCH)
    assert ISVC.suspend_patch(False, NOW) == (resume, MERGE_PATCH)


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00Z", "", "yes"])
def test_a_notebook_is_stopped_while_its_annotation_exists_whatever_its_value(value: str) -> None:
    obj = with_annotations({"kubeflow-resource-stopped": value})
    assert NOTEBOOK.can_suspend(obj) and NOTEBOOK.suspended(obj)
    assert NOTEBOOK.can_suspend({}) and not NOTEBOOK.suspended({})


def test_stopping_a_notebook_stamps_the_time_in_utc_and_resuming_removes_the_stamp() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    body, content_type = NOTEBOOK.suspend_patch(True, local)
    assert (body, content_type) == (
        {"metadata": {"annotations": {"kubeflow-resource-stopped": "2026-03-01T12:30:05Z"}}},
        MERGE_PATCH,
    )
    assert NOTEBOOK.suspend_patch(False, NOW)[0] == {
        "metadata": {"annotations": {"kubeflow-resource-stopped": None}}
    }


def test_an_unreadable_annotations_map_is_left_alone() -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": ["kubeflow-resource-stopped"]}}
    assert not NOTEBOOK.can_suspend(obj) and not NOTEBOOK.suspended(obj)


@pytest.mark.parametrize("adapter", [TRAINJOB, RAYJOB])
def test_trainjob_and_rayjob_are_suspended_through_spec_suspend(adapter: Any) -> None:
    assert adapter.suspend_path == ("spec", "suspend")
    assert adapter.suspended({"spec": {"suspend": True}})
    assert adapter.can_suspend({"spec": {}}) and not adapter.suspended({"spec": {}})
    assert adapter.suspend_patch(True, NOW) == ({"spec": {"suspend": True}}, MERGE_PATCH)


def test_a_suspend_field_that_is_not_a_boolean_is_left_alone() -> None:
    obj = {"spec": {"suspend": "true"}}
    assert not TRAINJOB.can_suspend(obj) and not TRAINJOB.suspended(obj)
    assert Suspend(("spec", "suspend")).state(obj) is None


@pytest.mark.parametrize(
    ("annotations", "scaler"),
    [
        ({}, "HorizontalPodAutoscaler KServe creates (serving.kserve.io/autoscalerClass: hpa, the default)"),
        ({"serving.kserve.io/autoscalerClass": "hpa"}, "HorizontalPodAutoscaler"),
        ({"serving.kserve.io/autoscalerClass": "kpa"}, "Knative's Pod Autoscaler"),
        ({"serving.kserve.io/autoscalerClass": "keda"}, "KEDA ScaledObject"),
        ({"serving.kserve.io/autoscalerClass": "external"}, "an external autoscaler"),
        ({"serving.kserve.io/autoscalerClass": "custom"}, "autoscalerClass: custom"),
        (
            {"serving.kserve.io/autoscalerClass": "none", "serving.kserve.io/deploymentMode": "Serverless"},
            "Knative's autoscaler (serving.kserve.io/deploymentMode: Serverless)",
        ),
        ({"serving.kserve.io/deploymentMode": "Knative"}, "Knative's autoscaler"),
        ({"serving.kserve.io/autoscalerClass": "none"}, None),
        (
            {"serving.kserve.io/autoscalerClass": "none", "serving.kserve.io/deploymentMode": "Standard"},
            None,
        ),
    ],
)
def test_an_inferenceservice_is_scaled_by_the_autoscaler_kserve_runs_for_it(
    annotations: dict[str, str], scaler: str | None
) -> None:
    found = ISVC.scaled_by(with_annotations(annotations))
    if scaler is None:
        assert found is None
    else:
        assert found is not None and scaler in found


def test_a_rayjob_with_rays_autoscaler_is_scaled_by_it() -> None:
    on = {"spec": {"rayClusterSpec": {"enableInTreeAutoscaling": True}}}
    assert "enableInTreeAutoscaling" in (RAYJOB.scaled_by(on) or "")
    assert RAYJOB.scaled_by({"spec": {"rayClusterSpec": {}}}) is None


def test_the_objects_another_autoscaler_would_scale_instead_are_named_after_the_workload() -> None:
    isvc = kind_for("serving.kserve.io", "InferenceService").child_targets("llm")
    assert ("apps/v1", "Deployment", "llm-predictor") in isvc
    assert kind_for("leaderworkerset.x-k8s.io", "LeaderWorkerSet").child_targets("lws") == (
        ("apps/v1", "StatefulSet", "lws"),
    )
    assert kind_for("apps", "Deployment").child_targets("web") == ()
