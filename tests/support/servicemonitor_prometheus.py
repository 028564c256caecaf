"""A real Prometheus scraping the cluster's fake dcgm-exporter with the scrape job that the real
prometheus-operator generates for the exporter's ServiceMonitor.

Everything a user's cluster would hold is created through the API server. That is the GPU Operator's
exporter (namespace ``gpu-operator``, DaemonSet ``nvidia-dcgm-exporter``, whose pod kwok runs, and a
Service with the port ``gpu-metrics``; the endpoints controller fills in its Endpoints), the
ServiceMonitor the GPU Operator creates for it with ``honorLabels`` as the test asks (the
dcgm-exporter chart's has the same endpoint fields; its port is named ``metrics``), and a
``Prometheus`` that selects the ServiceMonitor. prometheus-operator (prometheus_operator.py) writes
the configuration, so the job name, discovery, ``honor_labels`` and relabelling are its own. A local
Prometheus runs that configuration. `outside_the_pod` changes only what running outside a pod
requires, and says why at each change.

The DaemonSet has a pod on every GPU node, and each is scraped for its own node's GPUs (the fake
exporter's ``/nodes/<node>/metrics``), as in a real cluster: with ``honorLabels: false`` most of
those exporter pods, on nodes where no GPU is allocated, name no workload pod at all.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from tests.support.cluster import Cluster, wait_for
from tests.support.local_tools import tool
from tests.support.operator_process import PrivatePrometheus
from tests.support.prometheus_operator import PrometheusOperator

EXPORTER_NAMESPACE = "gpu-operator"
EXPORTER_NAME = "nvidia-dcgm-exporter"
EXPORTER_LABELS = {"app": EXPORTER_NAME}
PORT_NAME = "gpu-metrics"
EXPORTER_PORT = 9400
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_NAME = "k8s"
UPSTREAM = "prometheus-upstream"
# prometheus-operator's name for the job of a ServiceMonitor's first endpoint.
JOB = f"serviceMonitor/{EXPORTER_NAMESPACE}/{EXPORTER_NAME}/0"


class UpstreamPrometheus(PrivatePrometheus):
    """A private Prometheus of upstream's build (hack/tools.sh links it as prometheus-upstream):
    Debian's, which the cluster runs, has no Kubernetes service discovery."""

    @staticmethod
    def version() -> str:
        """Its version, so the operator writes a configuration for the Prometheus that runs it."""
        out = subprocess.run([tool(UPSTREAM), "--version"], capture_output=True, text=True, check=True)
        found = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
        assert found, f"cannot read the version of {UPSTREAM}:\n{out.stdout}{out.stderr}"
        return f"v{found.group(1)}"

    def restart(self) -> None:
        log = self.workdir / "prometheus.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    tool(UPSTREAM),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        wait_for(
            lambda: requests.get(f"{self.url}/-/ready", timeout=2).ok,
            timeout=60,
            describe=lambda: log.read_text(errors="replace")[-3000:],
        )


def exporter_objects(honor_labels: bool, release: str | None) -> list[dict[str, Any]]:
    """The GPU Operator's dcgm-exporter (its assets/state-dcgm-exporter): DaemonSet, Service and
    ServiceMonitor, with the honorLabels and interval a ClusterPolicy may set. The DaemonSet runs
    a pod on every GPU node, as the GPU Operator's does."""
    meta = {"name": EXPORTER_NAME, "namespace": EXPORTER_NAMESPACE, "labels": EXPORTER_LABELS}
    on_node = {"key": "nvidia.com/gpu.product", "operator": "Exists"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": EXPORTER_LABELS},
            "template": {
                "metadata": {"labels": EXPORTER_LABELS},
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [on_node]}]
                            }
                        }
                    },
                    # Also on a node an earlier test tainted.
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": EXPORTER_NAME,
                            # Never pulled: kwok runs no containers.
                            "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
                            "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": EXPORTER_LABELS,
            "ports": [
                {"name": PORT_NAME, "port": EXPORTER_PORT, "targetPort": EXPORTER_PORT, "protocol": "TCP"}
            ],
        },
    }
    endpoint: dict[str, Any] = {
        "port": PORT_NAME,
        "path": "/metrics",
        # The GPU Operator's default is 15s; a ClusterPolicy may set any interval.
        "interval": "2s",
        "honorLabels": honor_labels,
    }
    if release:
        # The fake exporter's switch to an old release's labels and names, as a scrape parameter.
        endpoint["params"] = {"labels": [release]}
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "jobLabel": "app",
            "namespaceSelector": {"matchNames": [EXPORTER_NAMESPACE]},
            "selector": {"matchLabels": EXPORTER_LABELS},
            "endpoints": [endpoint],
        },
    }
    return [daemonset, service, monitor]


def prometheus_object(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": PROMETHEUS_NAME, "namespace": PROMETHEUS_NAMESPACE},
        "spec": {
            "version": version,
            # No pod: the configuration runs outside the cluster (kwok runs no containers anyway).
            "replicas": 0,
            "scrapeInterval": "2s",
            "evaluationInterval": "5s",
            "serviceMonitorSelector": {"matchLabels": EXPORTER_LABELS},
            "serviceMonitorNamespaceSelector": {},
        },
    }


def _job(config: dict[str, Any]) -> dict[str, Any] | None:
    return next((j for j in config.get("scrape_configs") or [] if j["job_name"] == JOB), None)


# What prometheus-config-reloader does to the configuration in the pod before Prometheus reads it:
# `$(NAME)` becomes the value of the environment variable NAME, which the operator sets in the pod.
_ENV_REFERENCE = re.compile(r"\$\(([a-zA-Z_0-9]+)\)")


def _as_the_config_reloader_writes_it(text: str) -> str:
    pod_env = {"POD_NAME": f"prometheus-{PROMETHEUS_NAME}-0", "SHARD": "0"}

    def value(ref: re.Match[str]) -> str:
        assert ref.group(1) in pod_env, f"the configuration refers to {ref.group(0)}: what is its value?"
        return pod_env[ref.group(1)]

    return _ENV_REFERENCE.sub(value, text)


def outside_the_pod(generated: str, exporter_url: str, kubeconfig: str) -> dict[str, Any]:
    """The generated configuration, with what a Prometheus outside the cluster needs changed."""
    config: dict[str, Any] = yaml.safe_load(_as_the_config_reloader_writes_it(generated))
    assert [j["job_name"] for j in config["scrape_configs"]] == [JOB], config["scrape_configs"]
    job = config["scrape_configs"][0]
    for sd in job["kubernetes_sd_configs"]:
        # In the pod, discovery uses the in-cluster API server and the pod's ServiceAccount. Here it
        # uses the test cluster's kubeconfig.
        assert "api_server" not in sd, sd
        sd["kubeconfig_file"] = kubeconfig
    # The target is the exporter pod's address, which exists only in kwok's imagination (and an
    # Endpoints address may not be loopback). Its scrape goes to the fake exporter on loopback
    # instead, to the page of the pod's node (what that node's exporter pod would serve), with the
    # operator's parameters. `instance` keeps the pod's address, the value a real scrape gives it.
    # These rules are appended, so the operator's own relabelling (keep, namespace, pod, job...)
    # runs first, unchanged.
    job["relabel_configs"] += [
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": urlsplit(exporter_url).netloc},
        {
            "source_labels": ["__meta_kubernetes_pod_node_name"],
            "target_label": "__metrics_path__",
            "replacement": "/nodes/${1}/metrics",
        },
    ]
    return config


def _exporter_ready(cluster: Cluster) -> bool:
    """Every pod the DaemonSet wants runs, and the Service's Endpoints list them all as ready. (The
    DaemonSet's own count, not the nodes': another test's nodes may still be going away.)"""
    args = ["get", "daemonset", EXPORTER_NAME, "-n", EXPORTER_NAMESPACE, "-o", "json"]
    status = yaml.safe_load(cluster.kubectl(*args).stdout).get("status") or {}
    wanted = status.get("desiredNumberScheduled") or 0
    if not wanted or status.get("numberReady") != wanted:
        return False
    # Endpoints (v1): what the generated discovery (role endpoints, the operator's default) reads.
    args = ["get", "endpoints", EXPORTER_NAME, "-n", EXPORTER_NAMESPACE, "-o", "json"]
    subsets = yaml.safe_load(cluster.kubectl(*args).stdout).get("subsets") or []
    ready = [
        a for s in subsets for a in s.get("addresses") or [] if a.get("targetRef", {}).get("kind") == "Pod"
    ]
    return len(ready) == wanted


def _describe(cluster: Cluster) -> str:
    args = ["get", "daemonset,pods,endpoints,servicemonitors", "-n", EXPORTER_NAMESPACE, "-o", "wide"]
    return cluster.kubectl(*args, check=False).stdout


@contextmanager
def _in_the_cluster(cluster: Cluster, honor_labels: bool, release: str | None) -> Iterator[None]:
    """The exporter, its ServiceMonitor and a Prometheus, deleted afterwards."""
    namespaces = [EXPORTER_NAMESPACE, PROMETHEUS_NAMESPACE]
    refs = [f"namespace/{n}" for n in namespaces]
    # A previous test's namespaces may still be terminating (deleting takes the namespace controller
    # about 10 s, so tests do not wait for it when they are done).
    cluster.kubectl("wait", "--for=delete", *refs, "--timeout=120s", check=False)
    try:
        cluster.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
        )
        # Pods are refused until the namespace's default ServiceAccount exists.
        account = ["get", "serviceaccount", "default", "-n", EXPORTER_NAMESPACE]
        wait_for(lambda: cluster.kubectl(*account, check=False).returncode == 0, timeout=60)
        exporter = exporter_objects(honor_labels, release)
        cluster.apply([*exporter, prometheus_object(UpstreamPrometheus.version())])
        wait_for(lambda: _exporter_ready(cluster), timeout=90, describe=lambda: _describe(cluster))
        yield
    finally:
        cluster.kubectl("delete", *refs, "--ignore-not-found", "--wait=false", check=False)


def _query(prometheus_url: str, query: str) -> list[dict[str, Any]]:
    rsp = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    result: list[dict[str, Any]] = rsp.json()["data"]["result"]
    return result


@contextmanager
def servicemonitor_prometheus(
    exporter_url: str, honor_labels: bool, release: str | None = None, *, operator: PrometheusOperator
) -> Iterator[str]:
    """A running Prometheus with the job `operator` generated; yields its URL once it holds GPU
    series. ``release`` asks the fake exporter for old labels or 1.x names."""
    with _in_the_cluster(operator.cluster, honor_labels, release):
        params = {"labels": [release]} if release else None

        def ready(config: dict[str, Any]) -> bool:
            job = _job(config)
            return job is not None and (job.get("honor_labels"), job.get("params")) == (honor_labels, params)

        generated = operator.generated_config(PROMETHEUS_NAMESPACE, PROMETHEUS_NAME, ready)
        config = outside_the_pod(generated, exporter_url, operator.cluster.kubeconfig)
        with UpstreamPrometheus.start(config) as prometheus:
            gpus = 'count({__name__=~"DCGM_FI_DEV_GPU_UTIL|dcgm_gpu_utilization"})'
            wait_for(
                lambda: _query(prometheus.url, gpus),
                timeout=60,
                describe=lambda: f"targets: {_query(prometheus.url, 'up')}",
            )
            yield prometheus.url
