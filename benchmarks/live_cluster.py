"""The live benchmark's edge: its own local cluster (hack/cluster.sh), fast object creation, the
operator as a real process, and the counters it samples (operator and Prometheus /metrics, RSS)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from rightsizer.adapters.metrics.exposition import Exposition, parse_exposition
from rightsizer.devcluster.cluster_env import exported

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "hack" / "cluster.sh"

# The benchmark's own cluster, beside the demo's (rightsizer) and the tests' (rightsizer-test).
CLUSTER_ENV = {
    "RIGHTSIZER_CLUSTER_NAME": "rightsizer-bench",
    "RIGHTSIZER_APISERVER_PORT": "36443",
    "RIGHTSIZER_PROMETHEUS_PORT": "39090",
    "RIGHTSIZER_DCGM_PORT": "39400",
    "RIGHTSIZER_OPERATOR_METRICS_PORT": "38080",
}


def log(message: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {message}", flush=True)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what to do."""


# -- the cluster -----------------------------------------------------------------------------------


@dataclass
class LocalCluster:
    env: dict[str, str]  # RIGHTSIZER_* for hack/cluster.sh
    kubeconfig: str = ""
    prometheus_url: str = ""
    dcgm_url: str = ""
    bin: str = ""
    started: bool = False

    @property
    def name(self) -> str:
        return self.env["RIGHTSIZER_CLUSTER_NAME"]

    @property
    def audit_log(self) -> Path:
        return Path.home() / ".kwok" / "clusters" / self.name / "logs" / "audit.log"

    def audit_lines(self, since: float) -> Iterator[str]:
        """Audit log lines of files written since `since` (unix time), oldest file first: the API
        server rotates the log at 100 MB into audit-<time>.log beside it."""
        files = sorted(self.audit_log.parent.glob("audit*.log"), key=lambda f: f.stat().st_mtime)
        for path in files:
            if path.stat().st_mtime >= since:
                with path.open() as lines:
                    yield from lines

    @property
    def audit_policy_in_use(self) -> Path:
        return Path.home() / ".kwok" / "clusters" / self.name / "audit.yaml"

    def _run(self, command: str, extra: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, **(extra or {})}
        return subprocess.run(
            [str(CLUSTER_SH), command], env=env, capture_output=True, text=True, timeout=900
        )

    def running(self) -> bool:
        return self._run("status").returncode == 0

    def up(self, knobs: Mapping[str, str]) -> None:
        """Start the cluster unless it runs already (then it is reused as it is)."""
        if self.running():
            log(f"reusing the running cluster {self.name}")
        else:
            log(f"starting cluster {self.name} (hack/cluster.sh up)")
            proc = self._run("up", knobs)
            if proc.returncode != 0:
                raise BenchError(f"hack/cluster.sh up failed:\n{proc.stderr[-3000:]}")
            self.started = True
        values = exported(self._run("env").stdout)
        self.kubeconfig = values["KUBECONFIG"]
        self.prometheus_url = values["RIGHTSIZER_PROMETHEUS_URL"]
        self.dcgm_url = values["RIGHTSIZER_DCGM_URL"]
        self.bin = values["RIGHTSIZER_BIN"]

    def down(self) -> None:
        log(f"stopping cluster {self.name} (hack/cluster.sh down)")
        proc = self._run("down")
        if proc.returncode != 0:
            log(f"hack/cluster.sh down said:\n{proc.stderr[-2000:]}")

    def tool(self, name: str) -> str:
        return str(Path(self.bin) / name)


# -- creating and watching objects as the cluster admin ------------------------------------------

_PATHS = {  # kind -> (API prefix, plural, namespaced)
    "Node": ("/api/v1", "nodes", False),
    "Namespace": ("/api/v1", "namespaces", False),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "GPUWorkload": ("/apis/rightsizer.io/v1alpha1", "gpuworkloads", True),
    "GPUNodePool": ("/apis/rightsizer.io/v1alpha1", "gpunodepools", False),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "NodePool": ("/apis/karpenter.sh/v1", "nodepools", False),
}


def object_path(obj: Mapping[str, Any]) -> str:
    prefix, plural, namespaced = _PATHS[obj["kind"]]
    meta = obj["metadata"]
    where = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{prefix}{where}/{plural}/{meta['name']}"


class Admin:
    """The cluster admin's client: server-side apply from a thread pool, and raw JSON reads."""

    def __init__(self, kubeconfig: str, workers: int) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = workers
        self.api = client.ApiClient(configuration)
        self.workers = workers

    def _call(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        headers = {"Accept": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/apply-patch+yaml"  # JSON is YAML
        for attempt in range(6):
            method_, url, headers_, body_, _ = self.api.param_serialize(
                method, path, query_params=list(query.items()), header_params=headers, body=body,
                auth_settings=["BearerToken"],
            )  # fmt: skip
            response = self.api.call_api(
                method_, url, header_params=headers_, body=body_, _request_timeout=60
            )
            data = response.read()
            if response.status < 400:
                return json.loads(data) if data else None
            # A loaded 2-core API server sheds load with 429 and times out with 500/504: retry.
            if response.status not in (429, 500, 503, 504) or attempt == 5:
                raise ApiException(status=response.status, reason=f"{method} {path}: {data[:500]!r}")
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def apply(self, obj: Mapping[str, Any]) -> None:
        self._call("PATCH", object_path(obj), obj, fieldManager="rightsizer-bench", force="true")

    def apply_all(self, objects: Sequence[Mapping[str, Any]]) -> float:
        """Server-side apply every object (creating or resetting it); returns seconds taken."""
        started = time.monotonic()
        with ThreadPoolExecutor(self.workers) as pool:
            for _ in pool.map(self.apply, objects):
                pass
        return time.monotonic() - started

    def get(self, path: str, **query: str) -> Any:
        return self._call("GET", path, **query)

    def delete(self, path: str) -> None:
        try:
            self._call("DELETE", path)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        return list(self.get(path, **query).get("items") or [])


def wait_for(what: str, check: Callable[[], tuple[bool, str]], timeout: float, every: float = 5.0) -> float:
    """Poll `check` (done?, progress text) until done; returns seconds waited. Says what it saw."""
    started = time.monotonic()
    last = ""
    said = started
    while True:
        done, progress = check()
        if done:
            return time.monotonic() - started
        now = time.monotonic()
        if now - started > timeout:
            raise BenchError(f"{what}: not done within {timeout:.0f}s (last seen: {progress})")
        if progress != last and now - said >= 15:
            log(f"  {what}: {progress}")
            last, said = progress, now
        time.sleep(every)


# -- Prometheus ------------------------------------------------------------------------------------


def prom_query(url: str, query: str) -> list[dict[str, Any]]:
    rsp = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=30)
    rsp.raise_for_status()
    result: list[dict[str, Any]] = rsp.json()["data"]["result"]
    return result


def prom_scalar(url: str, query: str) -> float | None:
    result = prom_query(url, query)
    return float(result[0]["value"][1]) if result else None


def scrape(url: str, prefixes: Sequence[str] = ()) -> Exposition:
    """A /metrics page, parsed; only the sample lines of metrics starting with `prefixes` if given
    (Prometheus' own page carries lines our strict parser need not understand)."""
    rsp = requests.get(url, headers={"Accept": "text/plain;version=0.0.4"}, timeout=30)
    rsp.raise_for_status()
    text = rsp.text
    if prefixes:
        text = "\n".join(line for line in text.splitlines() if line.startswith(tuple(prefixes))) + "\n"
    return parse_exposition(text)


@dataclass
class Sampler:
    """Samples values every `every` seconds on a thread: (unix time, value) per name."""

    probes: Mapping[str, Callable[[], float]]
    every: float = 5.0  # each operator /metrics render costs it CPU: sample sparingly
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, probe in self.probes.items():
                t = time.time()
                # A missed sample is fine: the neighbours still bound the value.
                with contextlib.suppress(requests.RequestException, OSError, ValueError):
                    self.samples.setdefault(name, []).append((t, probe()))
            self._stop.wait(self.every)


# -- the operator ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # the process has just exited (a restart): nothing to read
        return out
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


class OperatorRun:
    """`rightsizer run` as a real process, logged to a file."""

    def __init__(self, args: Sequence[str], log_path: Path, metrics_port: int) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        log_path.write_text("")
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSIZER_")}
        with self.log_path.open("a") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "rightsizer.cli.main", "run", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )  # fmt: skip

    def restart(self) -> None:
        """Stop the process and start a new one with the same arguments (an operator restart)."""
        self.stop()
        self.proc = self._spawn()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self) -> Exposition:
        if not self.alive():
            raise BenchError(f"the operator exited with {self.proc.returncode}:\n{self.tail()}")
        return scrape(self.metrics_url)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
