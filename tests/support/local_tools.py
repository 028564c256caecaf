"""The binaries hack/tools.sh builds, and stopping the processes the tests start from them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def tool(name: str) -> str:
    """A binary hack/tools.sh builds (kubectl, helm, prometheus-operator, prometheus-upstream...)."""
    for candidate in (
        Path(os.environ.get("RIGHTSIZER_BIN", "")) / name,
        Path.home() / ".cache" / "gpu-rightsizer" / "bin" / name,
    ):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: run `hack/tools.sh` (or set RIGHTSIZER_BIN)")
    return found


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Ask a process to stop; kill it if it has not within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
