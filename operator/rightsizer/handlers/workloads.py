"""kopf handlers for GPUWorkloads: a timer per object calls the reconciler and patches the result."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf

from rightsizer.runtime.workloads import WorkloadReconciler

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "gpuworkloads"


def register(
    registry: kopf.OperatorRegistry,
    reconciler: WorkloadReconciler,
    interval_seconds: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
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
        *, body: kopf.Body, patch: kopf.Patch, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        result = reconciler.reconcile(body, now=clock())
        patch.status.update(result.status)
        for key, value in result.annotations.items():
            patch.metadata.annotations[key] = value
        for event in result.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            logger.info("%s: %s", event.reason, event.message)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, optional=True, id="forget")
    def forget(*, namespace: str | None, name: str, **_: Any) -> None:
        reconciler.forget(namespace or "", name)
