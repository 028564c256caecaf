"""The operator as a real process (`rightsizer run`) and a private Prometheus a test may stop."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

from tests.support.chart import SESSION_IDENTITY
from tests.support.cluster import wait_for
from tests.support.local_tools import stop

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    def __init__(
        self,
        proc: subprocess.Popen[str],
        log_path: Path,
        metrics_port: int,
        prometheus_url: str,
        health_port: int = 0,
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.health_url = f"http://127.0.0.1:{health_port}/healthz"
        self.prometheus_url = prometheus_url

    @classmethod
    @contextmanager
    def start(
        cls,
        kubeconfig: str,
        namespace: str,
        prometheus_url: str,
        *,
        interval: float = 3,
        extra_args: Sequence[str] = (),
        standalone: bool = True,
        identity: str | None = None,
        cluster_wide: bool | None = None,
        refusals_expected: str | None = None,
    ) -> Iterator[OperatorProcess]:
        """`kubeconfig` is the cluster admin's (set-up and clean-up). The operator itself runs as
        `identity` (a kubeconfig), by default the Helm chart's ServiceAccount: every e2e test proves
        the chart's RBAC is enough, and a refused request fails the test.

        The default chart is installed cluster-wide, so its operator watches every namespace, as
        installed (tests touch only their own namespace). With an `identity` of a chart installed for
        some namespaces, the operator watches `namespace` only, as that chart would run it;
        `cluster_wide=True` says the `identity` is the cluster-wide chart's (e.g. through a proxy).
        `refusals_expected` (a regular expression) names log lines of refusals the test makes itself."""
        run_as = identity or SESSION_IDENTITY.get(kubeconfig).kubeconfig
        wide = cluster_wide if cluster_wide is not None else identity is None
        watched = [] if wide else ["--namespace", namespace]
        metrics_port, health_port = free_port(), free_port()
        log = Path(tempfile.mkstemp(prefix="rightsizer-operator-", suffix=".log")[1])
        cmd = [
            sys.executable, "-m", "rightsizer.cli.main", "run",
            "--kubeconfig", run_as,
            *watched,
            "--interval", str(interval),
            *(["--standalone"] if standalone else []),
            "--prometheus-url", prometheus_url,
            "--metrics-address", "127.0.0.1",
            "--metrics-port", str(metrics_port),
            "--health-port", str(health_port),
            *extra_args,
        ]  # fmt: skip
        if "--pool-selector" not in extra_args:
            # Consolidation is cluster-wide: an operator of one test only touches GPUNodePools labelled
            # for its namespace (consolidation tests label theirs and pass their own selector).
            cmd += ["--pool-selector", f"rightsizer.io/e2e-owner={namespace}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSIZER_")}
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        handle = cls(proc, log, metrics_port, prometheus_url, health_port)
        try:
            wait_for(handle.healthy, timeout=60, describe=handle.log)
            yield handle
        finally:
            # Like a user uninstalling: delete the GPUWorkloads while the operator still runs, so it
            # removes its finalizers and the namespace can go away, also when the test failed.
            kubectl = str(Path(os.environ.get("RIGHTSIZER_BIN", "/usr/local/bin")) / "kubectl")
            delete = ["delete", "gpuworkloads", "--all", "-n", namespace, "--timeout=60s"]
            cmd = [kubectl, "--kubeconfig", kubeconfig, *delete]
            subprocess.run(cmd, capture_output=True, check=False, timeout=90)
            stop(proc)
            if proc.returncode not in (0, -15):
                print(f"operator exited {proc.returncode}; log:\n{handle.log()}")
            expected = re.compile(refusals_expected) if refusals_expected else None
            refused = [r for r in handle.refused_requests() if expected is None or not expected.search(r)]
            log.unlink(missing_ok=True)
        # Reached only when the test passed: then any refused request fails it.
        assert not refused, "the API server refused the operator (RBAC):\n" + "\n".join(refused[:10])

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
        return requests.get(self.metrics_url, timeout=2).ok

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def refused_requests(self) -> list[str]:
        """Log lines of API requests refused by authorisation (403 Forbidden). A namespace being
        deleted also answers 403 to new events in it: that is not a permission problem."""
        return [
            line
            for line in self.log().splitlines()
            if ("Forbidden" in line or "403" in line.split()) and "being terminated" not in line
        ]


def prometheus_sees(prometheus_url: str, namespace: str, app: str, pods: int) -> bool:
    """Prometheus has a GPU series for `pods` pods of `app`: the operator can decide on them."""
    query = f'count(count by (pod) (DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}", pod=~"{app}-.*"}}))'
    rsp = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    result = rsp.json()["data"]["result"]
    return bool(result) and int(float(result[0]["value"][1])) == pods


class PrivatePrometheus:
    """A Prometheus of a test's own, scraping the fake exporter, that the test may stop and restart."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def start(cls, config: dict[str, Any] | None = None) -> Iterator[PrivatePrometheus]:
        """With `config` (a Prometheus configuration), else one job scraping the fake exporter."""
        exporter = urlparse(os.environ["RIGHTSIZER_DCGM_URL"])
        workdir = Path(tempfile.mkdtemp(prefix="rightsizer-prom-"))
        default = {
            "global": {"scrape_interval": "2s"},
            "scrape_configs": [{"job_name": "dcgm", "static_configs": [{"targets": [exporter.netloc]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config or default, sort_keys=False))
        prom = cls(free_port(), workdir)
        try:
            prom.restart()
            yield prom
        finally:
            prom.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def restart(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: requests.get(f"{self.url}/-/ready", timeout=2).ok, timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Until the socket is released, a restart on the same port would fail.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)


def pool_passes(operator: OperatorProcess, pool: str) -> float:
    """How many consolidation passes the operator has made over `pool` (its own /metrics)."""
    prefix = f'rightsizer_pool_passes_total{{pool="{pool}"}} '
    for line in requests.get(operator.metrics_url, timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def reconciles(operator: OperatorProcess) -> float:
    """How many workload reconciliations the operator has made (its own /metrics)."""
    for line in requests.get(operator.metrics_url, timeout=5).text.splitlines():
        if line.startswith("rightsizer_reconcile_total "):
            return float(line.split()[-1])
    return 0.0


def wait_reconciles(operator: OperatorProcess, count: int) -> None:
    """Negative checks on workloads wait for `count` more reconciliations, never for a fixed time."""
    start = reconciles(operator)
    wait_for(lambda: reconciles(operator) >= start + count, timeout=30 + 5 * count, describe=operator.log)


def wait_passes(operator: OperatorProcess, pool: str, count: int) -> None:
    """Negative checks wait for `count` more passes over the pool, never for a fixed time."""
    start = pool_passes(operator, pool)
    wait_for(
        lambda: pool_passes(operator, pool) >= start + count, timeout=30 + 5 * count, describe=operator.log
    )
