"""`eval "$(hack/cluster.sh env)"`, as the README and the demo print it, sets up a shell for the local
cluster: the variables are exported to the programs it starts, and kubectl is the cluster's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rightsizer.devcluster.cluster_env import exported

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_printed_hint_exports_the_variables_and_puts_the_clusters_tools_on_path(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "kubectl").write_text("#!/bin/sh\n")
    (tools / "kubectl").chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "RIGHTSIZER_CACHE_DIR": str(tmp_path)}
    # A child process sees KUBECONFIG only if it was exported.
    script = 'eval "$(hack/cluster.sh env)"; command -v kubectl; printenv KUBECONFIG'
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    kubectl, kubeconfig = done.stdout.split()
    assert kubectl == str(tools / "kubectl")
    printed = subprocess.run(
        ["hack/cluster.sh", "env"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert exported(printed)["KUBECONFIG"] == kubeconfig
    assert "PATH" not in exported(printed)
