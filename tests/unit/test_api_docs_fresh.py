"""docs/api.md is generated from the API models: a stale reference fails the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from rightsizer.api.docgen import api_reference

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_api_reference_is_fresh() -> None:
    assert DOC.read_text(encoding="utf-8") == api_reference() + "\n", (
        "docs/api.md is stale: run `rightsizer crds --docs docs/api.md`"
    )


def test_every_spec_field_is_documented() -> None:
    text = api_reference()
    for field in ("spec.targetRef.apiVersion", "spec.idlePolicy.action", "spec.disruption.budgets[].nodes"):
        assert f"`{field}`" in text
