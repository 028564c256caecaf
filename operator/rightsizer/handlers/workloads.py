"""kopf handlers for GPUWorkloads: a timer per object that calls the reconciler with the in-memory
view of the cluster (adapters/cluster_cache.py) and patches the result. No list request per workload
per pass."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf

from rightsizer.adapters.cluster_cache import ClusterCache
from rightsizer.core.status import Problem
from rightsizer.runtime.workloads import WorkloadReconciler

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "gpuworkloads"
log = logging.getLogger(__name__)


def register(
    registry: kopf.OperatorRegistry,
    reconciler: WorkloadReconciler,
    interval_seconds: float,
    cache: ClusterCache,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    @kopf.on.startup(registry=registry, id="watch-cluster")
    def watch_cluster(**_: Any) -> None:
        cache.start()

    @kopf.on.cleanup(registry=registry, id="stop-watching")
    def stop_watching(**_: Any) -> None:
        cache.stop()

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
    def rightsize(*, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        # Deciding on a half-read cluster could count a workload's pods as missing: wait for the first
        # list of every kind (seconds at start-up; at once afterwards).
        if not cache.wait_synced(timeout=interval_seconds):
            raise kopf.TemporaryError("the cluster has not been read yet", delay=interval_seconds)
        stale = cache.stale()
        if stale is not None:
            # What the cache says may be minutes old: no decision on it until it has listed again.
            result = reconciler.hold(body, clock(), Problem("CacheStale", f"cluster view stale: {stale}"))
        else:
            result = reconciler.reconcile(body, now=clock(), view=cache.view())
        patch.status.update(result.status)
        for key, value in result.annotations.items():
            patch.metadata.annotations[key] = value
        for event in result.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            log.info("%s/%s %s: %s", body.metadata.namespace, body.metadata.name, event.reason, event.message)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, optional=True, id="forget")
    def forget(*, namespace: str | None, name: str, **_: Any) -> None:
        reconciler.forget(namespace or "", name)
