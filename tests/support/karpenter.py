"""The real Karpenter (its kwok cloud provider), run as a local process against the test cluster.

hack/tools.sh builds ``sigs.k8s.io/karpenter/kwok`` at ``KARPENTER_VERSION`` (hack/versions.env) as
``karpenter-kwok`` and fetches the CRDs of the same module. Karpenter runs as in any cluster, leader
election off: it launches kwok nodes (NodeClaim → Node) for Pending pods its NodePools fit, and its
termination flow drains and deletes the node of a deleted NodeClaim. Instance types and prices are
the local cluster's (rightsizer.devcluster.karpenter_fleet).

Tests make their own NodePools (``Karpenter.node_pool``), tainted for the test, so Karpenter launches
nodes only for that test's pods, and delete them afterwards (``Karpenter.cleanup``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.devcluster.karpenter_fleet import SHAPES, PricedShape, instance_types, node_class, node_pool
from tests.support.cluster import Cluster, wait_for
from tests.support.local_tools import stop, tool
from tests.support.operator_process import ROOT, free_port

GROUP, VERSION = "karpenter.sh", "v1"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
TEST_TAINT = "rightsizer.io/karpenter-test"
CRD_NAMES = (
    "nodepools.karpenter.sh",
    "nodeclaims.karpenter.sh",
    "nodeoverlays.karpenter.sh",
    "capacitybuffers.autoscaling.x-k8s.io",
    "kwoknodeclasses.karpenter.kwok.sh",
)


def _pins() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def crd_files() -> list[Path]:
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer")) / "crds"
    version = _pins()["KARPENTER_VERSION"]
    files = sorted((cache / f"karpenter-{version}").glob("*.yaml"))
    files += sorted((cache / f"karpenter-kwok-{version}").glob("*.yaml"))
    assert len(files) == len(CRD_NAMES), f"run hack/tools.sh: Karpenter's CRDs missing from {cache}"
    return files


def install_crds(cluster: Cluster) -> None:
    """Karpenter's own CRDs (server-side: they are larger than the last-applied annotation allows)."""
    cluster.kubectl("wait", "--for=delete", *(f"crd/{n}" for n in CRD_NAMES), "--timeout=60s", check=False)
    cluster.kubectl("apply", "--server-side", *(a for f in crd_files() for a in ("-f", str(f))))
    cluster.kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in CRD_NAMES), "--timeout=60s")


def shape(pool: str) -> PricedShape:
    return next(s for s in SHAPES if s.pool == pool)


class Karpenter:
    """A running Karpenter; `node_pool` adds a NodePool only this test's pods land on."""

    def __init__(
        self,
        cluster: Cluster,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        health: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.proc = proc
        self.env = env or dict(os.environ)
        self.log_path = log_path
        self.health_url = f"http://127.0.0.1:{health}"
        self.custom = client.CustomObjectsApi(cluster.api)
        self.id = f"kp{secrets.token_hex(3)}"

    @classmethod
    @contextmanager
    def start(cls, cluster: Cluster) -> Iterator[Karpenter]:
        """Installs Karpenter's CRDs and the KWOKNodeClass, then runs Karpenter with the cluster
        admin's kubeconfig; on exit stops it and removes whatever its NodePools left behind."""
        install_crds(cluster)
        cluster.apply(node_class())
        workdir = Path(tempfile.mkdtemp(prefix="karpenter-"))
        types = workdir / "instance-types.json"
        types.write_text(json.dumps(instance_types()))
        log = workdir / "karpenter.log"
        health = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": cluster.kubeconfig,
            "DISABLE_LEADER_ELECTION": "true",
            "INSTANCE_TYPES_FILE_PATH": str(types),
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(health),
            # Pending pods are batched for at most this long before Karpenter launches nodes.
            "BATCH_MAX_DURATION": "3s",
            "BATCH_IDLE_DURATION": "1s",
        }
        with log.open("wb") as out:
            proc = subprocess.Popen([tool("karpenter-kwok")], stdout=out, stderr=subprocess.STDOUT, env=env)
        karpenter = cls(cluster, proc, log, health, env)
        try:
            wait_for(karpenter.healthy, timeout=60, describe=karpenter.log)
            yield karpenter
        finally:
            with suppress(Exception):
                karpenter.cleanup()
            stop(karpenter.proc)  # the one running now: a test may have started it again
            karpenter.release_leftovers()
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()

    def kill(self) -> None:
        """Kill Karpenter as a crash or an eviction of its pod would."""
        self.proc.kill()
        self.proc.wait()

    def start_again(self) -> None:
        """Start a killed Karpenter: it takes up its NodeClaims from the API server, as a new
        Karpenter pod does."""
        if self.proc.poll() is None:
            return
        with self.log_path.open("ab") as out:
            out.write(b"\n--- started again ---\n")
            out.flush()
            self.proc = subprocess.Popen(
                [tool("karpenter-kwok")], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        wait_for(self.healthy, timeout=60, describe=self.log)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Karpenter exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        try:
            return requests.get(f"{self.health_url}/readyz", timeout=2).ok
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def node_pool(self, kind: str, **options: Any) -> str:
        """A NodePool `<id>-<kind>` of the shape `kind` names (e.g. "gpu-l4-x4"), tainted for this
        test; returns its name. `options` go to karpenter_fleet.node_pool (consolidation policy...)."""
        name = f"{self.id}-{kind}"
        taint = {"key": TEST_TAINT, "value": self.id, "effect": "NoSchedule"}
        body = node_pool(shape(kind), name=name, taints=[taint], labels={TEST_TAINT: self.id}, **options)
        body["metadata"]["labels"] = {TEST_TAINT: self.id}
        self.cluster.apply(body)
        return name

    def toleration(self) -> dict[str, str]:
        return {"key": TEST_TAINT, "operator": "Equal", "value": self.id, "effect": "NoSchedule"}

    def launch(self, pool: str) -> str:
        """A NodeClaim made from NodePool `pool`'s template, as Karpenter's provisioner makes one;
        returns the name of the node Karpenter launches for it, once Ready."""
        spec = self.custom.get_cluster_custom_object(GROUP, VERSION, "nodepools", pool)["spec"]["template"]
        claim = self.custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            "nodeclaims",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "NodeClaim",
                "metadata": {
                    "generateName": f"{pool}-",
                    "labels": {**spec["metadata"]["labels"], NODEPOOL_LABEL: pool},
                },
                "spec": {
                    k: spec["spec"][k]
                    for k in ("nodeClassRef", "requirements", "taints")
                    if k in spec["spec"]
                },
            },
        )
        name = claim["metadata"]["name"]

        def node() -> str | None:
            status = (
                self.custom.get_cluster_custom_object(GROUP, VERSION, "nodeclaims", name).get("status") or {}
            )
            launched = status.get("nodeName")
            return launched if launched in self.ready_nodes(pool) else None

        return str(wait_for(node, timeout=90, describe=lambda: self.log()[-3000:]))

    def claims(self, pool: str) -> list[dict[str, Any]]:
        listed = self.custom.list_cluster_custom_object(
            GROUP, VERSION, "nodeclaims", label_selector=f"{NODEPOOL_LABEL}={pool}"
        )
        return list(listed.get("items") or [])

    def nodes(self, pool: str) -> list[client.V1Node]:
        core = client.CoreV1Api(self.cluster.api)
        return list(core.list_node(label_selector=f"{NODEPOOL_LABEL}={pool}").items)

    def ready_nodes(self, pool: str) -> list[str]:
        """Nodes of the pool that are Ready and that Karpenter has registered and initialised."""
        ready = []
        for node in self.nodes(pool):
            conditions = {c.type: c.status for c in node.status.conditions or []}
            labels = node.metadata.labels or {}
            if conditions.get("Ready") == "True" and labels.get("karpenter.sh/initialized") == "true":
                ready.append(node.metadata.name)
        return ready

    @contextmanager
    def for_test(self) -> Iterator[Karpenter]:
        """A fresh id for one test's NodePools; they, their NodeClaims and nodes are gone after."""
        self.id = f"kp{secrets.token_hex(3)}"
        try:
            yield self
        finally:
            self.cleanup(f"{TEST_TAINT}={self.id}")

    def cleanup(self, selector: str = TEST_TAINT) -> None:
        """Deletes the tests' NodePools and waits until Karpenter's termination flow has removed their
        NodeClaims and nodes."""
        # A deleted NodePool leaves its NodeClaims (Karpenter only stops launching): delete them too.
        for kind in ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh"):
            self.cluster.kubectl("delete", kind, "-l", selector, "--wait=false", check=False)
        core = client.CoreV1Api(self.cluster.api)

        def gone() -> bool:
            claims = self.custom.list_cluster_custom_object(
                GROUP, VERSION, "nodeclaims", label_selector=selector
            )
            nodes = core.list_node(label_selector=selector).items
            # Karpenter's termination waits for do-not-disrupt pods forever (no terminationGracePeriod):
            # the test's pods go now, as its namespace would take them later.
            for node in nodes:
                on_node = core.list_pod_for_all_namespaces(
                    field_selector=f"spec.nodeName={node.metadata.name}"
                )
                for pod in on_node.items:
                    with suppress(ApiException):
                        core.delete_namespaced_pod(
                            pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                        )
            return not claims.get("items") and not nodes

        wait_for(gone, timeout=120, describe=lambda: self.log()[-3000:])

    def release_leftovers(self) -> None:
        """After Karpenter stopped: NodeClaims and nodes it could not finish lose their finalizers."""
        with suppress(ApiException):
            claims = self.custom.list_cluster_custom_object(
                GROUP, VERSION, "nodeclaims", label_selector=TEST_TAINT
            )
            for claim in claims.get("items") or []:
                self.custom.patch_cluster_custom_object(
                    GROUP,
                    VERSION,
                    "nodeclaims",
                    claim["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
                with suppress(ApiException):
                    self.custom.delete_cluster_custom_object(
                        GROUP, VERSION, "nodeclaims", claim["metadata"]["name"]
                    )
        core = client.CoreV1Api(self.cluster.api)
        for node in core.list_node(label_selector=TEST_TAINT).items:
            with suppress(ApiException):
                core.patch_node(node.metadata.name, {"metadata": {"finalizers": None}})
                core.delete_node(node.metadata.name)
