"""Shared pytest set-up: markers by folder, so `-m unit` never needs a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

_E2E_DIRS = {"e2e", "contract"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = set(Path(str(item.fspath)).parts)
        if parts & _E2E_DIRS:
            if not item.get_closest_marker("e2e") and not item.get_closest_marker("unit"):
                item.add_marker(pytest.mark.e2e)
        elif not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.unit)
