"""kopf handlers for GPUWorkloads: in-memory indexes of what the loop reads, and a timer per object
that calls the reconciler and patches the result. No list request per workload per pass."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf

from rightsizer.adapters import cluster_view as cv
from rightsizer.runtime.workloads import WorkloadReconciler

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "gpuworkloads"
log = logging.getLogger(__name__)


def register(
    registry: kopf.OperatorRegistry,
    reconciler: WorkloadReconciler,
    interval_seconds: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    @kopf.index("pods", registry=registry, id="pods_by_namespace")
    def pods_by_namespace(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_pod(body)

    @kopf.index("nodes", registry=registry, id="node_labels")
    def node_labels(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_node(body)

    @kopf.index("autoscaling", "v2", "horizontalpodautoscalers", registry=registry, id="hpas_by_namespace")
    def hpas_by_namespace(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_hpa(body)

    # Indexed only where KEDA is installed: kopf starts watching when the CRD appears.
    @kopf.index("keda.sh", "v1alpha1", "scaledobjects", registry=registry, id="scaled_objects_by_namespace")
    def scaled_objects_by_namespace(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_scaled_object(body)

    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="workloads_by_namespace")
    def workloads_by_namespace(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_workload(body)

    @kopf.index(GROUP, VERSION, "gpunodepools", registry=registry, id="pools")
    def pools(body: kopf.Body, **_: Any) -> dict[str, Any]:
        return cv.index_pool(body)

    # A failed pass (API server restarting, throttled) is retried at the next interval, not in 60 s.
    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=interval_seconds,
        backoff=interval_seconds,
        sharp=True,
        registry=registry,
        id="rightsize",
    )
    def rightsize(
        *,
        body: kopf.Body,
        patch: kopf.Patch,
        **indexes: Any,  # kopf passes every index above by its id
    ) -> None:
        view = cv.IndexedView(
            pods=indexes["pods_by_namespace"],
            nodes=indexes["node_labels"],
            hpas=indexes["hpas_by_namespace"],
            scaled_objects=indexes["scaled_objects_by_namespace"],
            workloads=indexes["workloads_by_namespace"],
            pools=indexes["pools"],
        )
        started = time.perf_counter()
        result = reconciler.reconcile(body, now=clock(), view=view)
        reconciler.telemetry.passes.inc()
        reconciler.telemetry.pass_seconds.inc(by=time.perf_counter() - started)
        patch.status.update(result.status)
        for key, value in result.annotations.items():
            patch.metadata.annotations[key] = value
        for event in result.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            log.info("%s/%s %s: %s", body.metadata.namespace, body.metadata.name, event.reason, event.message)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, optional=True, id="forget")
    def forget(*, namespace: str | None, name: str, **_: Any) -> None:
        reconciler.forget(namespace or "", name)
