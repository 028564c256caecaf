"""Cluster API provider: the pool is one MachineDeployment.

Removing a node marks its Machine with ``cluster.x-k8s.io/delete-machine`` and then lowers the
MachineDeployment's replicas through its /scale subresource: the MachineSet deletes marked Machines
first, so exactly the drained node goes (the cluster-autoscaler's Cluster API provider does the same).
Adding nodes raises replicas. A Machine already marked is not counted twice after a crash.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.base import ProviderError

GROUP = "cluster.x-k8s.io"
VERSION = "v1beta1"
# The MachineDeployment's replicas when this operator marked the Machine: a resumed removal lowers
# them only if nobody has yet.
REPLICAS_BEFORE_ANNOTATION = "rightsizer.io/replicas-before-removal"
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"


class ClusterApiProvider:
    def __init__(self, api: client.ApiClient, *, pool: str, namespace: str, machine_deployment: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.pool = pool
        self.namespace = namespace
        self.machine_deployment = machine_deployment

    @property
    def type(self) -> str:
        return "clusterapi"

    @property
    def can_scale_up(self) -> bool:
        return True

    @property
    def removes_nodes(self) -> bool:
        return True

    def _error(self, what: str, exc: ApiException) -> ProviderError:
        return ProviderError(
            f"GPUNodePool {self.pool}: {what} MachineDeployment {self.namespace}/{self.machine_deployment} "
            f"failed ({exc.status} {exc.reason}); check that it exists and the operator may patch "
            "machinedeployments/scale and machines"
        )

    def check(self) -> str | None:
        try:
            self.desired_nodes()
        except ProviderError as exc:
            return str(exc)
        return None

    def desired_nodes(self) -> int:
        try:
            scale = self._custom.get_namespaced_custom_object_scale(
                GROUP, VERSION, self.namespace, "machinedeployments", self.machine_deployment
            )
        except ApiException as exc:
            raise self._error("reading the scale of", exc) from exc
        return int((scale.get("spec") or {}).get("replicas") or 0)

    def _set_replicas(self, replicas: int) -> None:
        try:
            self._custom.patch_namespaced_custom_object_scale(
                GROUP,
                VERSION,
                self.namespace,
                "machinedeployments",
                self.machine_deployment,
                {"spec": {"replicas": max(replicas, 0)}},
            )
        except ApiException as exc:
            raise self._error("scaling", exc) from exc

    def add_nodes(self, count: int) -> list[str]:
        self._set_replicas(self.desired_nodes() + count)
        return []  # the MachineSet creates Machines; their nodes register later

    def machine_of(self, node: str) -> dict[str, Any] | None:
        machines = self._custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "machines",
            label_selector=f"{DEPLOYMENT_NAME_LABEL}={self.machine_deployment}",
        )
        for machine in machines.get("items") or []:
            if ((machine.get("status") or {}).get("nodeRef") or {}).get("name") == node:
                found: dict[str, Any] = machine
                return found
        return None

    def remove_node(self, node: str) -> None:
        """Mark the node's Machine for deletion, then lower the replicas by one. Both steps are
        recorded on the Machine (the replicas it was marked at), so a crash between them converges:
        a resumed removal lowers the replicas only if they are still what they were when marked."""
        machine = self.machine_of(node)
        if machine is None:
            return  # already gone with its Machine
        annotations = machine.get("metadata", {}).get("annotations") or {}
        name = machine["metadata"]["name"]
        if DELETE_MACHINE_ANNOTATION in annotations:
            before = annotations.get(REPLICAS_BEFORE_ANNOTATION)
            if before is not None and before.isdigit() and self.desired_nodes() == int(before):
                self._set_replicas(int(before) - 1)  # marked, but the scale-down never happened
            return
        before_count = self.desired_nodes()
        marks = {DELETE_MACHINE_ANNOTATION: "true", REPLICAS_BEFORE_ANNOTATION: str(before_count)}
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                "machines",
                name,
                {"metadata": {"annotations": marks}},
            )
        except ApiException as exc:
            raise self._error(f"marking Machine {name} of", exc) from exc
        self._set_replicas(before_count - 1)

    def describe(self) -> str:
        return f"clusterapi: MachineDeployment {self.namespace}/{self.machine_deployment}"
