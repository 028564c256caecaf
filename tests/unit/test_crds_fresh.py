"""crds/ is generated from the API models; this fails when someone changed one without the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from rightsizer.api import crdgen

pytestmark = pytest.mark.unit

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_crds_directory_matches_the_api_models() -> None:
    stale = crdgen.stale(CRDS_DIR)
    assert stale == [], "regenerate with `rightsizer crds`: " + "; ".join(stale)
