"""A handle on the cluster the e2e tests run against (local kwok cluster, kind, or an existing one).

Tests that need a cluster fail loudly when it is not there: a skipped e2e test is not a pass.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from rightsizer.devcluster.cluster_env import exported
from rightsizer.devcluster.scenario_rules import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_CONFIGMAP = "fake-dcgm-scenario"
SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"


class ClusterUnavailable(RuntimeError):
    pass


def _cluster_env() -> dict[str, str]:
    """KUBECONFIG, Prometheus and exporter URLs: from the environment, else from hack/cluster.sh env."""
    keys = ("KUBECONFIG", "RIGHTSIZER_PROMETHEUS_URL", "RIGHTSIZER_DCGM_URL", "RIGHTSIZER_BIN")
    if all(os.environ.get(k) for k in keys):
        return {k: os.environ[k] for k in keys}
    out = subprocess.run(
        [str(ROOT / "hack/cluster.sh"), "env"], capture_output=True, text=True, check=True
    ).stdout
    env = {k: v for k, v in exported(out).items() if k in keys}
    env.update({k: os.environ[k] for k in keys if os.environ.get(k)})
    return env


@dataclass
class Cluster:
    mode: str
    kubeconfig: str
    prometheus_url: str
    dcgm_url: str
    kubectl_bin: str
    api: client.ApiClient = field(repr=False)

    @classmethod
    def connect(cls) -> Cluster:
        mode = os.environ.get("RIGHTSIZER_TEST_CLUSTER", "local")
        env = _cluster_env()
        kubeconfig = env["KUBECONFIG"]
        if not Path(kubeconfig).exists():
            raise ClusterUnavailable(
                f"no kubeconfig at {kubeconfig}: start the cluster with 'hack/cluster.sh up' "
                "(or run the suite with 'make test', which starts it)"
            )
        kubectl = str(Path(env.get("RIGHTSIZER_BIN", "")) / "kubectl")
        if not Path(kubectl).exists():
            kubectl = shutil.which("kubectl") or "kubectl"
        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            client.VersionApi(api).get_code()
        except Exception as exc:
            raise ClusterUnavailable(f"API server in {kubeconfig} does not answer: {exc}") from exc
        return cls(
            mode, kubeconfig, env["RIGHTSIZER_PROMETHEUS_URL"], env["RIGHTSIZER_DCGM_URL"], kubectl, api
        )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, objects: Iterable[dict[str, Any]] | dict[str, Any], namespace: str | None = None) -> None:
        docs = [objects] if isinstance(objects, dict) else list(objects)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=yaml.safe_dump_all(docs))


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60,
    interval: float = 1,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll until predicate() is truthy; on timeout fail with what was last seen."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # a transient API error is just "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            seen = describe() if describe else ""
            raise AssertionError(
                f"condition not met within {timeout}s"
                + (f"; last error: {last_error!r}" if last_error else "")
                + (f"\nlast seen:\n{seen}" if seen else "")
            )
        time.sleep(interval)


def new_namespace_name(prefix: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")[:40].strip("-")
    return f"t-{cleaned}-{secrets.token_hex(3)}"


class GpuUtilization:
    """Drives the fake DCGM exporter: utilisation and app gauge rules live in a ConfigMap in the pods'
    namespace (later rules win, utilisation and each app gauge on their own: see scenario.py)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._rules: dict[str, list[dict[str, Any]]] = {}

    def set(
        self,
        namespace: str,
        util: float,
        pod_prefix: str | None = None,
        selector: dict[str, str] | None = None,
        memory_used_mib: int | None = None,
    ) -> None:
        rule: dict[str, Any] = {"util": util}
        self._add(namespace, rule, pod_prefix, selector, memory_used_mib)

    def series(
        self,
        namespace: str,
        points: Sequence[tuple[float, float]],
        pod_prefix: str | None = None,
        selector: dict[str, str] | None = None,
    ) -> None:
        rule: dict[str, Any] = {"series": [[t, u] for t, u in points]}
        self._add(namespace, rule, pod_prefix, selector, None)

    def per_gpu(self, namespace: str, percents: Sequence[float], selector: dict[str, str]) -> None:
        """Each GPU of the selected pods its own utilisation: GPU i of a pod reads ``percents[i]``."""
        self._add(namespace, {"gpuUtil": list(percents)}, None, selector, None)

    def app_metrics(
        self,
        namespace: str,
        metrics: Mapping[str, float],
        pod_prefix: str | None = None,
        selector: dict[str, str] | None = None,
    ) -> None:
        """Gauges the selected pods' own servers export, one series per pod (e.g.
        ``{"vllm:num_requests_waiting": 12}``); their GPU utilisation stays what other rules set."""
        self._add(namespace, {"appMetrics": dict(metrics)}, pod_prefix, selector, None)

    def clear(self, namespace: str) -> None:
        self._write(namespace, [])

    def _add(
        self,
        namespace: str,
        rule: dict[str, Any],
        pod_prefix: str | None,
        selector: dict[str, str] | None,
        memory_used_mib: int | None,
    ) -> None:
        if pod_prefix:
            rule["podPrefix"] = pod_prefix
        if selector:
            rule["selector"] = selector
        if memory_used_mib is not None:
            rule["memoryUsedMiB"] = memory_used_mib
        self._write(namespace, [*self._rules.get(namespace, []), rule])

    def _write(self, namespace: str, rules: list[dict[str, Any]]) -> None:
        text = yaml.safe_dump({"rules": rules})
        # A rule the exporter would refuse (and skip) fails here, not as a wait that times out.
        load_scenario(text, f"ConfigMap {namespace}/{SCENARIO_CONFIGMAP}", namespace)
        self._rules[namespace] = rules
        self._cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": SCENARIO_CONFIGMAP,
                    "namespace": namespace,
                    "labels": {SCENARIO_LABEL: "true"},
                },
                "data": {"scenario.yaml": text},
            }
        )
