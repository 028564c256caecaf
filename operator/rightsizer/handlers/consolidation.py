"""kopf handlers for GPUNodePools: a timer per pool runs a consolidation pass and patches its status."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rightsizer.runtime.node_pools import PoolManager

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "gpunodepools"


def register(
    registry: kopf.OperatorRegistry, manager: PoolManager, interval_seconds: float, standalone: bool
) -> None:
    if standalone:
        # With peering, only the active replica may touch nodes: there, recovery runs at its first pass.
        @kopf.on.startup(registry=registry, id="recover-drains")
        def recover(*, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
            for outcome in manager.recover():
                logger.warning("%s: %s", outcome.result.value, outcome.message)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=interval_seconds,
        backoff=interval_seconds,  # a failed pass is retried at the next interval, not after kopf's 60s
        labels=dict(manager.pool_selector) or None,
        registry=registry,
        id="consolidate",
    )
    def consolidate(
        *,
        body: kopf.Body,
        name: str,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        result = manager.run_pass(name, body.get("status"))
        patch.status.update(result.status)
        for event in result.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            logger.info("%s: %s", event.reason, event.message)
