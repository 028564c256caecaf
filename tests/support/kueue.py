"""The real Kueue, run as a local process against the test cluster.

hack/tools.sh builds Kueue's manager (``sigs.k8s.io/kueue/cmd/kueue`` at ``KUEUE_VERSION``,
hack/versions.env) as ``kueue`` and fetches the CRDs and webhook manifests of the same module. Kueue
runs as its own manifests install it, leader election off, with only the batch/v1 Job integration:
its CRDs (the multi-version ones converted by its webhook), its admission webhooks for Jobs and its
own kinds, the Service ``kueue-webhook-service`` in ``kueue-system`` and its internal certificate
management, which issues a certificate for that Service into a Secret and writes the CA into the
webhook configurations and CRDs. Kueue waits for the Secret's files, which a kubelet would mount into
its pod: the test writes them. Its visibility server (the pending-workloads API) is off.

The cluster has no kube-proxy: the API server (``--enable-aggregator-routing``, hack/cluster.sh)
calls a webhook at its Service's endpoints, so the Service has no selector and an EndpointSlice of
ours points at the webhook server, which listens on this host's own address (endpoints may not be
loopback).

``Kueue.start`` also makes a ResourceFlavor and a ClusterQueue with the quota it is given; tests
make LocalQueues in their namespaces (``Kueue.local_queue``). Everything is removed afterwards: the
queues while Kueue runs (it holds finalizers on them), then the webhooks, then Kueue; the CRDs stay,
converting no more (other tests install the Workload CRD alone, with no controller).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.cluster import Cluster, wait_for
from tests.support.local_tools import stop, tool
from tests.support.operator_process import ROOT, free_port

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
NAMESPACE = "kueue-system"
SERVICE = "kueue-webhook-service"
SECRET = "kueue-webhook-server-cert"
WEBHOOK_CONFIGURATIONS = {
    "MutatingWebhookConfiguration": "kueue-mutating-webhook-configuration",
    "ValidatingWebhookConfiguration": "kueue-validating-webhook-configuration",
}
CONVERTED_CRDS = (
    "localqueues",
    "clusterqueues",
    "cohorts",
    "workloads",
    "multikueueclusters",
)
"""The CRDs Kueue's manifests convert through its webhook (and its certificates name)."""
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
TEST_LABEL = "rightsizer.io/kueue-test"


def _pins() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _cached(name: str) -> Path:
    """What hack/tools.sh fetched from Kueue's module: its CRDs (kueue) and webhooks (kueue-webhook)."""
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer")) / "crds"
    found = cache / f"{name}-{_pins()['KUEUE_VERSION']}"
    assert found.is_dir(), f"run hack/tools.sh: {found} is missing"
    return found


def crd_files() -> list[Path]:
    return sorted(_cached("kueue").glob("*.yaml"))


def host_address() -> str:
    """This host's first global IPv4 address: the webhook's endpoint (loopback is refused there)."""
    out = subprocess.run(
        ["ip", "-json", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True
    )
    for link in json.loads(out.stdout or "[]"):
        for addr in link.get("addr_info") or []:
            if addr.get("family") == "inet" and addr.get("local"):
                return str(addr["local"])
    raise AssertionError(f"no global IPv4 address on this host for Kueue's webhook endpoint: {out.stderr}")


def _crds() -> list[dict[str, Any]]:
    """Kueue's CRDs as its manifests install them: the multi-version ones converted by its webhook."""
    docs = [yaml.safe_load(f.read_text()) for f in crd_files()]
    for doc in docs:
        if doc["spec"]["names"]["plural"] in CONVERTED_CRDS:
            doc["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "service": {"name": SERVICE, "namespace": NAMESPACE, "path": "/convert"}
                    },
                    "conversionReviewVersions": ["v1"],
                },
            }
    return docs


def _served_here(webhook: Mapping[str, Any]) -> bool:
    """Webhooks of Kueue's own kinds and of batch/v1 Jobs: the one integration this Kueue runs (the
    others' handlers are not served, and a webhook that cannot be called refuses what it matches)."""
    for rule in webhook.get("rules") or []:
        groups = rule.get("apiGroups") or []
        if GROUP in groups or ("batch" in groups and "jobs" in (rule.get("resources") or [])):
            return True
    return False


def _webhook_configurations() -> list[dict[str, Any]]:
    """Kueue's webhook configurations (its module's config/components/webhook), named and pointed
    at its Service as its kustomization names them."""
    path = _cached("kueue-webhook") / "manifests.yaml"
    configurations = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") not in WEBHOOK_CONFIGURATIONS:
            continue
        webhooks = [w for w in doc["webhooks"] if _served_here(w)]
        for webhook in webhooks:
            webhook["clientConfig"]["service"].update(name=SERVICE, namespace=NAMESPACE)
        doc["metadata"] = {"name": WEBHOOK_CONFIGURATIONS[doc["kind"]]}
        doc["webhooks"] = webhooks
        configurations.append(doc)
    assert len(configurations) == 2, f"no webhook configurations in {path}"
    return configurations


def _webhook_endpoint(address: str, port: int) -> list[dict[str, Any]]:
    """The Service the webhooks name, and its endpoint: the webhook server on this host."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{SERVICE}-host",
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": "e2e.rightsizer.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return [service, endpoints]


def _configuration(workdir: Path, address: str, ports: Mapping[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports['metrics']}"},
        "webhook": {"host": address, "port": ports["webhook"], "certDir": str(workdir / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": SERVICE,
            "webhookSecretName": SECRET,
        },
        # Its visibility server (pending workloads API) authenticates through the in-cluster
        # configuration a pod has and writes its certificate under /: not needed here.
        "featureGates": {"VisibilityOnDemand": False},
        "integrations": {"frameworks": ["batch/job"]},
    }


class Kueue:
    """A running Kueue and the ClusterQueue it admits from (``cluster_queue``)."""

    def __init__(self, cluster: Cluster, proc: subprocess.Popen[bytes], log_path: Path, health: int) -> None:
        self.cluster = cluster
        self.proc = proc
        self.log_path = log_path
        self.health_url = f"http://127.0.0.1:{health}"
        self.custom = client.CustomObjectsApi(cluster.api)
        self.id = f"kq{secrets.token_hex(3)}"
        self.cluster_queue = f"{self.id}-gpu"

    @classmethod
    @contextmanager
    def start(cls, cluster: Cluster, quota: Mapping[str, str]) -> Iterator[Kueue]:
        """Installs Kueue's CRDs, webhooks and Service, runs Kueue with the cluster admin's
        kubeconfig, and makes a ClusterQueue with the nominal ``quota`` (e.g. ``{"nvidia.com/gpu":
        "1", "cpu": "4", "memory": "8Gi"}``); on exit removes all of it."""
        workdir = Path(tempfile.mkdtemp(prefix="kueue-"))
        (workdir / "certs").mkdir()
        address = host_address()
        ports = {name: free_port() for name in ("health", "metrics", "webhook")}
        core = client.CoreV1Api(cluster.api)
        proc: subprocess.Popen[bytes] | None = None
        kueue: Kueue | None = None
        try:
            _create_namespace(core)
            # The secret Kueue's certificate management fills (its manifests create it empty).
            cluster.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": SECRET, "namespace": NAMESPACE},
                    },
                    *_webhook_endpoint(address, ports["webhook"]),
                ]
            )
            cluster.kubectl(
                "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(_crds())
            )
            crds = [
                f"crd/{plural}.{GROUP}"
                for plural in ("workloads", "clusterqueues", "localqueues", "resourceflavors")
            ]
            established = ("wait", "--for=condition=Established", *crds, "--timeout=10s")
            wait_for(lambda: cluster.kubectl(*established, check=False).returncode == 0, timeout=60)
            cluster.apply(_webhook_configurations())
            config = workdir / "config.yaml"
            config.write_text(yaml.safe_dump(_configuration(workdir, address, ports)))
            log = workdir / "kueue.log"
            env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [tool("kueue"), f"--config={config}"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=workdir,
                )
            kueue = cls(cluster, proc, log, ports["health"])
            # Kueue's certificate management fills the Secret and waits for its files, as a kubelet
            # mounts them into Kueue's pod: here the test does.
            wait_for(
                lambda: kueue and kueue.mount_certificate(workdir / "certs"), timeout=60, describe=kueue.log
            )
            wait_for(kueue.ready, timeout=120, describe=lambda: kueue.log()[-4000:] if kueue else "")
            kueue._make_cluster_queue(quota)
            yield kueue
        finally:
            if kueue is not None:
                with suppress(Exception):
                    kueue.cleanup()
            for kind, name in WEBHOOK_CONFIGURATIONS.items():
                cluster.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
            if proc is not None:
                stop(proc)
            _stop_converting(cluster)
            if kueue is not None:
                kueue.release_leftovers()
            cluster.kubectl(
                "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False
            )
            shutil.rmtree(workdir, ignore_errors=True)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Kueue exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        try:
            return requests.get(f"{self.health_url}/readyz", timeout=2).ok
        except requests.ConnectionError:
            return False

    def mount_certificate(self, directory: Path) -> bool:
        """Writes the webhook server's certificate and key from Kueue's Secret, once it has them."""
        if self.proc.poll() is not None:
            raise AssertionError(f"Kueue exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        secret = client.CoreV1Api(self.cluster.api).read_namespaced_secret(SECRET, NAMESPACE)
        data = secret.data or {}
        if not all(data.get(key) for key in ("ca.crt", "tls.crt", "tls.key")):
            return False
        for key in ("ca.crt", "tls.crt", "tls.key"):
            (directory / key).write_bytes(base64.b64decode(data[key]))
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _make_cluster_queue(self, quota: Mapping[str, str]) -> None:
        flavor = self.id
        labels = {TEST_LABEL: self.id}
        self.cluster.apply(
            [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ResourceFlavor",
                    "metadata": {"name": flavor, "labels": labels},
                },
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ClusterQueue",
                    "metadata": {"name": self.cluster_queue, "labels": labels},
                    "spec": {
                        "namespaceSelector": {},
                        "resourceGroups": [
                            {
                                "coveredResources": list(quota),
                                "flavors": [
                                    {
                                        "name": flavor,
                                        "resources": [
                                            {"name": name, "nominalQuota": value}
                                            for name, value in quota.items()
                                        ],
                                    }
                                ],
                            }
                        ],
                    },
                },
            ]
        )
        wait_for(lambda: self._active("clusterqueues", self.cluster_queue), timeout=60, describe=self.log)

    def _active(self, plural: str, name: str, namespace: str | None = None) -> bool:
        if namespace is None:
            obj = self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
        else:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Active" and c.get("status") == "True" for c in conditions)

    def local_queue(self, namespace: str, name: str = "gpu") -> str:
        """A LocalQueue ``name`` in ``namespace`` feeding the ClusterQueue, once Kueue has it active."""
        self.cluster.apply(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "LocalQueue",
                "metadata": {"name": name, "namespace": namespace, "labels": {TEST_LABEL: self.id}},
                "spec": {"clusterQueue": self.cluster_queue},
            }
        )
        wait_for(lambda: self._active("localqueues", name, namespace), timeout=60, describe=self.log)
        return name

    def workload_of(self, namespace: str, job: client.V1Job) -> dict[str, Any] | None:
        """The Workload Kueue made for ``job`` (owned by it as controller)."""
        listing = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "workloads",
            label_selector=f"kueue.x-k8s.io/job-uid={job.metadata.uid}",
        )
        for item in listing.get("items") or []:
            owners = item["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == job.metadata.uid and o.get("controller") for o in owners):
                return dict(item)
        return None

    def cleanup(self) -> None:
        """Deletes the test's queued Jobs and queues while Kueue runs, which releases their finalizers."""
        selector = f"{TEST_LABEL}={self.id}"
        batch = client.BatchV1Api(self.cluster.api)
        for queue in self.custom.list_cluster_custom_object(
            GROUP, VERSION, "localqueues", label_selector=selector
        )["items"]:
            namespace = queue["metadata"]["namespace"]
            for job in batch.list_namespaced_job(namespace, label_selector=QUEUE_LABEL).items:
                with suppress(ApiException):
                    batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
        for plural in ("localqueues", "clusterqueues", "resourceflavors"):
            self.cluster.kubectl(
                "delete", f"{plural}.{GROUP}", "-A", "-l", selector, "--wait=false", check=False
            )

        def gone() -> bool:
            return not any(
                self.custom.list_cluster_custom_object(GROUP, VERSION, plural, label_selector=selector)[
                    "items"
                ]
                for plural in ("localqueues", "clusterqueues", "resourceflavors")
            )

        wait_for(gone, timeout=60, describe=lambda: self.log()[-3000:])

    def release_leftovers(self) -> None:
        """After Kueue stopped: queues it could not release lose their finalizers."""
        selector = f"{TEST_LABEL}={self.id}"
        for plural in ("localqueues", "clusterqueues", "resourceflavors"):
            with suppress(ApiException):
                for obj in self.custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, label_selector=selector
                )["items"]:
                    meta = obj["metadata"]
                    patch = {"metadata": {"finalizers": None}}
                    with suppress(ApiException):
                        if "namespace" in meta:
                            self.custom.patch_namespaced_custom_object(
                                GROUP, VERSION, meta["namespace"], plural, meta["name"], patch
                            )
                        else:
                            self.custom.patch_cluster_custom_object(
                                GROUP, VERSION, plural, meta["name"], patch
                            )


def _create_namespace(core: client.CoreV1Api) -> None:
    """Kueue's namespace, once the one a previous run deleted is gone."""

    def created() -> bool:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        except ApiException as exc:
            if exc.status != 409:
                raise
            return core.read_namespace(NAMESPACE).status.phase == "Active"
        return True

    wait_for(created, timeout=120)


def _stop_converting(cluster: Cluster) -> None:
    """Kueue's CRDs convert no more once its webhook is gone: every stored object is at the storage
    version, and the tests that install the Workload CRD alone expect it so."""
    patch = json.dumps({"spec": {"conversion": {"strategy": "None", "webhook": None}}})
    for plural in CONVERTED_CRDS:
        cluster.kubectl("patch", "crd", f"{plural}.{GROUP}", "--type=merge", "-p", patch, check=False)
