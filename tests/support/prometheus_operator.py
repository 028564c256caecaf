"""The real prometheus-operator, run as a local process against the test cluster's API server.

hack/tools.sh builds its ``cmd/operator`` at ``PROMETHEUS_OPERATOR_VERSION`` (hack/versions.env) and
fetches the ``monitoring.coreos.com`` CRDs of the same release. The operator reconciles ``Prometheus``
objects as in any cluster: it selects ServiceMonitors and writes the Prometheus configuration into
the Secret ``prometheus-<name>``. It needs no image to do so: tests give their ``Prometheus`` objects
``replicas: 0`` (the StatefulSet is created, with no pod) and run the generated configuration with a
local Prometheus instead (see servicemonitor_prometheus.py).
"""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client

from tests.support.cluster import Cluster, wait_for
from tests.support.local_tools import stop, tool
from tests.support.operator_process import free_port

ROOT = Path(__file__).resolve().parents[2]

# The CRDs the operator's Prometheus controller watches (it waits for each to sync; ScrapeConfig is
# optional). Alertmanager, ThanosRuler and PrometheusAgent stay uninstalled: those controllers stay off.
CRD_PLURALS = ("prometheuses", "servicemonitors", "podmonitors", "probes", "prometheusrules", "scrapeconfigs")
# The key of the generated configuration in the Secret (pkg/prometheus ConfigFilename in the module).
CONFIG_KEY = "prometheus.yaml.gz"


def version() -> str:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    pins = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return pins["PROMETHEUS_OPERATOR_VERSION"]


def crd_dir() -> Path:
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer"))
    return cache / "crds" / f"prometheus-operator-{version()}"


def _crd_names(cluster: Cluster) -> set[str]:
    out = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    return {name.removeprefix("customresourcedefinition.apiextensions.k8s.io/") for name in out}


def _install_crds(cluster: Cluster) -> list[str]:
    """Installs the CRDs missing from the cluster; returns the names of those it installed."""
    names = [f"{plural}.monitoring.coreos.com" for plural in CRD_PLURALS]
    files = [crd_dir() / f"monitoring.coreos.com_{plural}.yaml" for plural in CRD_PLURALS]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"run hack/tools.sh: missing {missing}"
    # Another test may have just deleted some (without waiting): applying to a terminating CRD fails.
    cluster.kubectl("wait", "--for=delete", *(f"crd/{n}" for n in names), "--timeout=60s", check=False)
    present = _crd_names(cluster)
    # Server-side: these CRDs are larger than the last-applied annotation allows.
    cluster.kubectl("apply", "--server-side", *(a for f in files for a in ("-f", str(f))))
    cluster.kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in names), "--timeout=60s")
    return [n for n in names if n not in present]


class PrometheusOperator:
    """A running prometheus-operator; `generated_config` reads what it wrote for a Prometheus."""

    def __init__(self, cluster: Cluster, proc: subprocess.Popen[bytes], log_path: Path, port: int) -> None:
        self.cluster = cluster
        self.proc = proc
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    @contextmanager
    def start(cls, cluster: Cluster) -> Iterator[PrometheusOperator]:
        """Installs the CRDs it needs (and removes those it installed when done), then runs the
        operator with the cluster admin's kubeconfig, its web server on a free loopback port."""
        installed = _install_crds(cluster)
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="prometheus-operator-", suffix=".log")[1])
        cmd = [tool("prometheus-operator"), f"--web.listen-address=127.0.0.1:{port}", "--log-level=info"]
        # The operator has no --kubeconfig flag; it reads KUBECONFIG (else the in-cluster account).
        env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
        try:
            with log.open("wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            operator = cls(cluster, proc, log, port)
            try:
                wait_for(operator.healthy, timeout=60, describe=operator.log)
                yield operator
            finally:
                stop(proc)
        finally:
            log.unlink(missing_ok=True)
            if installed:
                crds = [f"crd/{name}" for name in installed]
                cluster.kubectl("delete", *crds, "--ignore-not-found", "--timeout=120s", check=False)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus-operator exited with {self.proc.returncode}:\n{self.log()}")
        return requests.get(f"{self.url}/healthz", timeout=2).ok

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def generated_config(
        self, namespace: str, name: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> str:
        """The configuration the operator generated for Prometheus `namespace/name`, as the text it
        wrote, once `ready` says it holds what the test set up (the operator reconciles
        asynchronously)."""
        core = client.CoreV1Api(self.cluster.api)
        seen = [""]

        def read() -> bool:
            secret = core.read_namespaced_secret(f"prometheus-{name}", namespace)
            seen[0] = gzip.decompress(base64.b64decode((secret.data or {})[CONFIG_KEY])).decode()
            return ready(yaml.safe_load(seen[0]) or {})

        wait_for(
            read,
            timeout=timeout,
            describe=lambda: f"generated:\n{seen[0]}\noperator log:\n{self.log()[-3000:]}",
        )
        return seen[0]
