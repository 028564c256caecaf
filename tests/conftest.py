"""Shared pytest set-up: markers by folder, so `-m unit` never needs a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chart import SESSION_IDENTITY

_E2E_DIRS = {"e2e", "contract"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = set(Path(str(item.fspath)).parts)
        if parts & _E2E_DIRS:
            if not item.get_closest_marker("e2e") and not item.get_closest_marker("unit"):
                item.add_marker(pytest.mark.e2e)
        elif not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.unit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The chart the e2e operators ran as (installed on first use) is uninstalled with the session.
    SESSION_IDENTITY.close()
