"""The console script's entry point: quiet in a pipe, and harmless to the process that calls it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rightsizer.cli.main import main

pytestmark = pytest.mark.unit

SNAPSHOTS = Path(__file__).parents[1] / "data" / "snapshots"
PLAN = ["plan", "--snapshot", str(SNAPSHOTS / "fragmented-20-nodes.json"), "--now", "2026-01-01T00:00:00Z"]


def test_main_leaves_the_callers_sigpipe_disposition_alone(capsys: pytest.CaptureFixture[str]) -> None:
    # Python ignores SIGPIPE so that a write to a closed socket raises; a command run in-process (as the
    # tests and `metrics inspect` callers do) must not turn that into a silent kill of the caller.
    before = signal.getsignal(signal.SIGPIPE)
    assert main(PLAN) == 0
    assert signal.getsignal(signal.SIGPIPE) == before
    assert "node" in capsys.readouterr().out


def test_output_cut_short_by_a_closed_pipe_ends_quietly() -> None:
    # The reader is gone before the plan is printed, so every write meets a closed pipe.
    command = " ".join([sys.executable, "-m", "rightsizer.cli.main", *PLAN])
    pipeline = f'{command} | true; exit "${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=60, check=False)
    assert done.stderr == ""
    assert done.returncode == 141
