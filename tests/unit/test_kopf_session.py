"""kopf talks to the API server through a bounded pool, with the operator's own identity."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from rightsizer.handlers.operator import bounded_session, connection_limit
from rightsizer.runtime.settings import Settings

pytestmark = pytest.mark.unit


def test_the_limit_leaves_room_for_every_watch_on_top_of_the_requests() -> None:
    assert connection_limit(Settings(api_connections=32)) == 32 + 4 + 4  # cluster-wide: one GPUWorkload watch
    many = Settings(api_connections=8, namespaces=[f"team-{i}" for i in range(50)])
    assert connection_limit(many) == 8 + 50 + 3 + 4  # a GPUWorkload watch per namespace


def test_the_session_carries_the_token_and_the_limit() -> None:
    info = kopf.ConnectionInfo(server="https://10.0.0.1:6443", scheme="Bearer", token="t0ken", insecure=True)

    async def make() -> tuple[int, str, str]:
        context = bounded_session(info, 12)
        session = context.aiohttp_session
        try:
            return session.connector.limit, session.headers["Authorization"], context.server  # type: ignore[union-attr]
        finally:
            await session.close()

    assert asyncio.run(make()) == (12, "Bearer t0ken", "https://10.0.0.1:6443")
