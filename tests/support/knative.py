"""Knative Serving's real PodAutoscaler CRD (fetched by hack/tools.sh from the knative.dev/serving
module into the tool cache; Knative's controllers do not run here) and a PodAutoscaler as Knative
makes one for a revision: it scales the revision's Deployment through `spec.scaleTargetRef`."""

from __future__ import annotations

from typing import Any

from tests.support.cluster import Cluster
from tests.support.workload_kinds import install_cached_crds

CRD = ("knative-serving", "KNATIVE_SERVING_VERSION", "podautoscaler.yaml")


def install_pod_autoscaler_crd(cluster: Cluster) -> None:
    install_cached_crds(cluster, [CRD], ["podautoscalers.autoscaling.internal.knative.dev"])


def pod_autoscaler(name: str, deployment: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling.internal.knative.dev/v1alpha1",
        "kind": "PodAutoscaler",
        "metadata": {
            "name": name,
            "annotations": {"autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev"},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "protocolType": "http1",
        },
    }
