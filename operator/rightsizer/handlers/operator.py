"""Operator-wide kopf set-up: persistence keys under our own prefix, peering, posting of events, and
kopf's connection to the API server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
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
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | kopf.AiohttpSession | None:
        # kopf's watches use exactly the identity the rest of the operator uses (--kubeconfig, the
        # in-cluster ServiceAccount, or $KUBECONFIG), never a different one found on the way.
        if credentials is None:
            return kopf.login_via_client(**kwargs)
        return bounded_session(credentials(), connection_limit(config))


def connection_limit(config: Settings) -> int:
    """Requests, plus one connection per watch kopf holds: GPUWorkloads in each namespace (or all),
    GPUNodePools, CRDs and the peering object, with room to spare. A limit below the watches would
    leave requests waiting behind streams that never end."""
    watches = max(1, len(config.namespaces)) + 3
    return config.api_connections + watches + 4


def bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """kopf's own session opens a connection for every concurrent request, without bound: 1,000
    GPUWorkloads due at once opened ~650 TLS connections, each with a 256 KiB read buffer (160 MiB
    resident). The same credentials through a pool of at most `limit` connections; kopf closes the
    session when it logs in again."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    return kopf.AiohttpSession(
        server=info.server, default_namespace=info.default_namespace, aiohttp_session=session
    )
