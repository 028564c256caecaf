"""Operator-wide kopf set-up: persistence keys under our own prefix, peering, posting of events."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rightsizer.runtime.settings import Settings

PREFIX = "rightsizer.io"


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
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
        # Same credentials as the rest of the operator: in-cluster ServiceAccount, else KUBECONFIG.
        return kopf.login_via_client(**kwargs)
