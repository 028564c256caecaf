"""The Helm chart in a test: install, upgrade and uninstall a release, and log in as its ServiceAccount.

kwok does not run containers, so the chart's Deployment never starts the operator; tests run the
operator process locally instead, authenticated with a token of the chart's ServiceAccount, so every
call it makes is authorised by the chart's RBAC and nothing else.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rightsizer.devcluster import identity
from tests.support.local_tools import tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gpu-rightsizer"


def helm_bin() -> str:
    return tool("helm")


def run_helm(*args: str, kubeconfig: str | None = None, timeout: float = 180) -> str:
    cmd = [helm_bin(), *args, *(["--kubeconfig", kubeconfig] if kubeconfig else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


@dataclass
class HelmRelease:
    """A release of the chart; `fullname` is what the chart names its objects."""

    name: str
    namespace: str
    kubeconfig: str

    @property
    def fullname(self) -> str:
        return self.name if "gpu-rightsizer" in self.name else f"{self.name}-gpu-rightsizer"

    @property
    def service_account(self) -> str:
        return self.fullname

    def _values_args(self, values: dict[str, Any], workdir: Path) -> list[str]:
        path = workdir / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]

    def install(self, values: dict[str, Any] | None = None) -> str:
        # --wait=false: the pods never become Ready on kwok; the API objects are what is checked.
        with tempfile.TemporaryDirectory(prefix="rightsizer-helm-") as tmp:
            return run_helm(
                "install", self.name, str(CHART), "--namespace", self.namespace, "--wait=false",
                *self._values_args(values or {}, Path(tmp)),
                kubeconfig=self.kubeconfig,
            )  # fmt: skip

    def upgrade(self, values: dict[str, Any] | None = None) -> str:
        with tempfile.TemporaryDirectory(prefix="rightsizer-helm-") as tmp:
            return run_helm(
                "upgrade", self.name, str(CHART), "--namespace", self.namespace, "--wait=false",
                *self._values_args(values or {}, Path(tmp)),
                kubeconfig=self.kubeconfig,
            )  # fmt: skip

    def uninstall(self) -> str:
        return run_helm(
            "uninstall", self.name, "--namespace", self.namespace, "--wait", "--timeout", "60s",
            kubeconfig=self.kubeconfig,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        out = run_helm(
            "status", self.name, "--namespace", self.namespace, "-o", "json", kubeconfig=self.kubeconfig
        )
        status: dict[str, Any] = json.loads(out)
        return status

    def installed(self) -> bool:
        out = run_helm("list", "--namespace", self.namespace, "-q", kubeconfig=self.kubeconfig)
        return self.name in out.split()


def service_account_kubeconfig(
    admin_kubeconfig: str, namespace: str, service_account: str, path: Path, duration: str = "1h"
) -> str:
    """A kubeconfig at `path` that authenticates as the ServiceAccount; returns the path."""
    return identity.service_account_kubeconfig(
        tool("kubectl"), admin_kubeconfig, namespace, service_account, path=path, duration=duration
    )


@dataclass(frozen=True)
class ChartIdentity:
    """A kubeconfig of the chart's ServiceAccount and the release it belongs to."""

    kubeconfig: str
    release: HelmRelease

    @property
    def peering_name(self) -> str:
        # The chart grants get/patch on its own ClusterKopfPeering only: replicas must use this name.
        return self.release.fullname


@contextmanager
def installed_chart_identity(
    admin_kubeconfig: str, workdir: Path, values: dict[str, Any] | None = None, duration: str = "2h"
) -> Iterator[ChartIdentity]:
    """Install the chart cluster-wide into a namespace of its own and yield its ServiceAccount's
    kubeconfig with the release. The kwok provider is on (the local cluster's pools are kwok nodes);
    `values` add to that. Uninstalls and deletes the namespace afterwards."""
    kubectl = tool("kubectl")
    namespace = f"rightsizer-chart-{secrets.token_hex(3)}"
    subprocess.run(
        [kubectl, "--kubeconfig", admin_kubeconfig, "create", "namespace", namespace],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    release = HelmRelease(f"rs-{secrets.token_hex(3)}", namespace, admin_kubeconfig)
    try:
        release.install(
            {"providers": {"kwok": True}, "nodeSelector": {"rightsizer.io/pool": "cpu"}, **(values or {})}
        )
        kubeconfig = service_account_kubeconfig(
            admin_kubeconfig,
            namespace,
            release.service_account,
            workdir / "chart-identity.kubeconfig",
            duration,
        )
        yield ChartIdentity(kubeconfig, release)
    finally:
        if release.installed():
            release.uninstall()
        subprocess.run(
            [kubectl, "--kubeconfig", admin_kubeconfig, "delete", "namespace", namespace, "--wait=false"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip


@contextmanager
def chart_identity(
    admin_kubeconfig: str, workdir: Path, values: dict[str, Any] | None = None, duration: str = "2h"
) -> Iterator[str]:
    """A kubeconfig of the chart's ServiceAccount (see `installed_chart_identity`): hand it to
    `running_operator` to run any scenario with the chart's permissions only."""
    with installed_chart_identity(admin_kubeconfig, workdir, values, duration) as installed:
        yield installed.kubeconfig


class _SessionIdentity:
    """The chart installed once per test session, on first use: every e2e test runs the operator as
    its ServiceAccount (least privilege is what is tested, not assumed). Closed at session end."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._by_admin: dict[str, ChartIdentity] = {}

    def get(self, admin_kubeconfig: str) -> ChartIdentity:
        if admin_kubeconfig not in self._by_admin:
            workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="rightsizer-id-")))
            self._by_admin[admin_kubeconfig] = self._stack.enter_context(
                installed_chart_identity(admin_kubeconfig, workdir, duration="6h")
            )
        return self._by_admin[admin_kubeconfig]

    def close(self) -> None:
        self._by_admin.clear()
        self._stack.close()


SESSION_IDENTITY = _SessionIdentity()
