"""ruff, mypy and import-linter are part of the test command: a layering or typing slip fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_lint_is_clean() -> None:
    run(str(BIN / "ruff"), "check", "operator", "tests", "benchmarks")


def test_ruff_format_is_clean() -> None:
    run(str(BIN / "ruff"), "format", "--check", "operator", "tests", "benchmarks")


def test_mypy_strict_is_clean() -> None:
    run(str(BIN / "mypy"))


def test_import_layers_hold() -> None:
    run(str(BIN / "lint-imports"))
