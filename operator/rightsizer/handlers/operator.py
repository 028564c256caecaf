"""Operator-wide kopf set-up: persistence keys under our own prefix, peering, posting of events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from rightsizer.runtime.settings import Settings

PREFIX = "rightsizer.io"


def register(
    registry: kopf.OperatorRegistry,
    config: Settings,
    ensure_peering: Callable[[str], None] | None = None,
    credentials: Callable[[], kopf.ConnectionInfo] | None = None,
) -> None:
    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        if not config.standalone:
            # One cluster-wide peering object for every replica, whatever namespaces it watches; the
            # replica with the highest priority acts, the others pause until it is gone.
            settings.peering.clusterwide = True
            if ensure_peering is not None:
                ensure_peering(config.peering_name)
        settings.persistence.finalizer = f"{PREFIX}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our own events are posted explicitly, with reasons
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        settings.execution.max_workers = 8

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's watches use exactly the identity the rest of the operator uses (--kubeconfig, the
        # in-cluster ServiceAccount, or $KUBECONFIG), never a different one found on the way.
        return credentials() if credentials is not None else kopf.login_via_client(**kwargs)
