"""ruff, mypy, import-linter and shellcheck are part of the test command: a layering, typing or shell slip
fails the suite."""

from __future__ import annotations

import shutil
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


def test_the_tooling_shell_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: hack/tools.sh installs it (Debian package shellcheck)"
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "hack").glob("*.sh"))
    run(shellcheck, "--external-sources", "--source-path=SCRIPTDIR", *scripts, ".ci/run")
