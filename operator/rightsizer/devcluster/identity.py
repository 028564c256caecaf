"""Log in as a ServiceAccount: a kubeconfig holding a TokenRequest token for it, against the same API
server as an admin kubeconfig. The demo and the tests run the operator this way, so every call it
makes is authorised by the Helm chart's RBAC and nothing else (kwok runs no containers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml


def service_account_kubeconfig(
    kubectl: str,
    admin_kubeconfig: str,
    namespace: str,
    service_account: str,
    *,
    path: Path,
    duration: str = "1h",
) -> str:
    """Write the kubeconfig at `path` (mode 0600) and return its path."""
    token = subprocess.run(
        [kubectl, "--kubeconfig", admin_kubeconfig, "create", "token", service_account,
         "-n", namespace, f"--duration={duration}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    admin = json.loads(
        subprocess.run(
            [kubectl, "--kubeconfig", admin_kubeconfig, "config", "view", "--raw", "--minify", "-o", "json"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    cluster = admin["clusters"][0]["cluster"]
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": user}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)
