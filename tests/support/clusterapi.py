"""Cluster API on the local control plane: its real CRDs (fetched by hack/tools.sh from the
sigs.k8s.io/cluster-api module into the tool cache), valid objects of them, and a stand-in for its
controllers that acts after a delay, as the real MachineSet and Machine controllers do.

The stand-in plays both: when a MachineDeployment's replicas exceed its Machines it creates a Machine
at once and, `provision_delay` later, the kwok Node that backs it (then the Machine's
status.nodeRef); when they fall below, it deletes a Machine (those marked with delete-machine first),
which a finalizer holds, like the real Machine controller's, until `removal_delay` later its Node is
deleted. Every replicas value it sees is recorded, so a test can count what was ordered.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.clusterapi import DELETE_MACHINE_ANNOTATION, DEPLOYMENT_NAME_LABEL
from rightsizer.adapters.nodepools.kwok_nodes import L4_X4, NodeShape, fake_node_manifest
from tests.support.cluster import ROOT, Cluster

GROUP = "cluster.x-k8s.io"
# The version the provider reads and writes; the storage version of the pinned CRDs.
VERSION = "v1beta1"
PLURALS = ("machinedeployments", "machinesets", "machines")
CLUSTER_NAME = "gpu"
FINALIZER = "machine.cluster.x-k8s.io"  # the real Machine controller's
INFRA = {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "DockerMachineTemplate"}


def crd_files() -> list[Path]:
    pins = dict(
        line.split("=", 1)
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer"))
    base = cache / "crds" / f"cluster-api-{pins['CLUSTER_API_VERSION']}"
    files = [base / f"{GROUP}_{plural}.yaml" for plural in PLURALS]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"run hack/tools.sh: Cluster API's CRDs missing: {missing}"
    return files


def install_crds(cluster: Cluster) -> None:
    """The real CRDs, server-side (larger than the last-applied annotation allows); forced, so they
    replace stand-ins an older run may have left. Nothing deletes them: they stay for the next test."""
    names = [f"crd/{plural}.{GROUP}" for plural in PLURALS]
    files = [a for f in crd_files() for a in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")


def machine_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A MachineDeployment the real schema accepts: cluster, selector and a template with bootstrap
    and infrastructure references."""
    labels = {DEPLOYMENT_NAME_LABEL: name, "cluster.x-k8s.io/cluster-name": CLUSTER_NAME}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MachineDeployment",
        "metadata": {"name": name},
        "spec": {
            "clusterName": CLUSTER_NAME,
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "clusterName": CLUSTER_NAME,
                    "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
                    "infrastructureRef": {**INFRA, "name": name},
                },
            },
        },
    }


def machine(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """A Machine of the MachineDeployment's template, as its MachineSet would create it."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Machine",
        "metadata": {"name": name, "labels": dict(template["metadata"]["labels"]), "finalizers": [FINALIZER]},
        "spec": {
            **template["spec"],
            "infrastructureRef": {**INFRA, "kind": "DockerMachine", "name": name},
        },
    }


@dataclass
class MachineController:
    """The MachineSet and Machine controllers of one MachineDeployment, acting after delays."""

    cluster: Cluster
    namespace: str
    name: str
    pool: str
    provision_delay: float
    removal_delay: float
    shape: NodeShape = L4_X4
    node_labels: dict[str, str] = field(default_factory=dict)
    replicas_seen: list[int] = field(default_factory=list)  # every distinct value, in order
    machines_created: int = 0
    _due: dict[str, float] = field(default_factory=dict)  # Machine → when its node registers / goes
    _stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.cluster.api)
        self.core = client.CoreV1Api(self.cluster.api)

    def create(self, replicas: int) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "machinedeployments", machine_deployment(self.name, replicas)
        )

    def replicas(self) -> int:
        md = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "machinedeployments", self.name
        )
        return int(md["spec"].get("replicas") or 0)

    def machines(self) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "machines", label_selector=f"{DEPLOYMENT_NAME_LABEL}={self.name}"
        ).get("items")
        return list(items or [])

    def node_of(self, m: dict[str, Any]) -> str | None:
        return ((m.get("status") or {}).get("nodeRef") or {}).get("name")

    def nodes(self) -> list[str]:
        return [n for m in self.machines() if (n := self.node_of(m))]

    def step(self) -> None:
        """One reconcile of both controllers."""
        replicas = self.replicas()
        if not self.replicas_seen or self.replicas_seen[-1] != replicas:
            self.replicas_seen.append(replicas)
        now = time.monotonic()
        machines = self.machines()
        live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
        for _ in range(replicas - len(live)):
            name = f"{self.name}-{secrets.token_hex(3)}"
            body = machine(machine_deployment(self.name, replicas), name)
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "machines", body)
            self.machines_created += 1
            self._due[name] = now + self.provision_delay
        if len(live) > replicas:
            marked = sorted(
                live, key=lambda m: DELETE_MACHINE_ANNOTATION not in (m["metadata"].get("annotations") or {})
            )
            for m in marked[: len(live) - replicas]:
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "machines", m["metadata"]["name"]
                )
                self._due[m["metadata"]["name"]] = now + self.removal_delay
        for m in machines:
            name = m["metadata"]["name"]
            if self._due.get(name, now + 1) > now:
                continue
            if m["metadata"].get("deletionTimestamp"):
                self._remove(m)
            elif self.node_of(m) is None:
                self._provision(m)
            self._due.pop(name, None)

    def _provision(self, m: dict[str, Any]) -> None:
        name = m["metadata"]["name"]
        node = fake_node_manifest(name, self.shape, self.pool, "us-east-1a")
        node["metadata"]["labels"].update(self.node_labels)
        self.core.create_node(node)
        status = {"status": {"nodeRef": {"apiVersion": "v1", "kind": "Node", "name": name}}}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "machines", name, status
        )

    def _remove(self, m: dict[str, Any]) -> None:
        name = m["metadata"]["name"]
        if (node := self.node_of(m)) is not None:
            try:
                self.core.delete_node(node)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        patch = {"metadata": {"finalizers": None}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "machines", name, patch)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.step()
            except ApiException as exc:  # a conflict or a blip: the next reconcile retries
                self.errors.append(f"{exc.status} {exc.reason}")

    @contextmanager
    def running(self) -> Iterator[MachineController]:
        thread = threading.Thread(target=self._run, name=f"capi-{self.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)
            for m in self.machines():
                self._remove(m)
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "machines", m["metadata"]["name"]
                )
