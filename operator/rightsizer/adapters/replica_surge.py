"""The Kubernetes edge of make-before-break: find a pod's Deployment or StatefulSet, raise its replicas
with a record of the surge, read how many are available, and restore the count.

Raising and restoring are one merge patch of the object each, carrying both ``spec.replicas`` and the
:data:`~rightsizer.core.surge.SURGE_ANNOTATION` record, with the object's resourceVersion as a
precondition: the replica loop (which reads through the record) and a restarted operator never see a
raised count without its record, or a record without its count, and a change made in between (409)
is read again instead of being overwritten.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.kube_retry import KubeRetry
from rightsizer.core.errors import RightsizerError
from rightsizer.core.snapshot import Pod
from rightsizer.core.surge import SURGE_ANNOTATION, SURGE_LABEL, Owner, SurgeRecord

MERGE_PATCH = "application/merge-patch+json"
CONFLICT_ATTEMPTS = 5

log = logging.getLogger(__name__)


class SurgeConflict(RightsizerError):
    """The owner kept changing while the drain tried to raise or restore it."""

    def __init__(self, owner: Owner, attempts: int) -> None:
        super().__init__(
            f"{owner.key} changed {attempts} times while its replicas were being set for a drain; "
            "something else keeps writing it. The drain stops; the next pass tries again"
        )


@dataclass(frozen=True)
class OwnerState:
    replicas: int
    available: int
    record: SurgeRecord | None
    resource_version: str


def _load(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.data)
    return document


class KubeSurges:
    def __init__(self, api: client.ApiClient, retry: KubeRetry | None = None) -> None:
        self._apps = client.AppsV1Api(api)
        self._retry = retry or KubeRetry()

    def owner_of(self, pod: Pod) -> Owner | None:
        """The pod's StatefulSet, or the Deployment owning its ReplicaSet; None for anything else."""
        controller = pod.controller
        if controller is None:
            return None
        if controller.kind == "StatefulSet":
            return Owner("StatefulSet", pod.namespace, controller.name)
        if controller.kind != "ReplicaSet":
            return None
        try:
            rs = self._retry.call(
                f"GET replicaset {pod.namespace}/{controller.name}",
                lambda: _load(
                    self._apps.read_namespaced_replica_set(
                        controller.name, pod.namespace, _preload_content=False
                    )
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        owners = (rs.get("metadata") or {}).get("ownerReferences") or []
        deployment = next((o for o in owners if o.get("controller") and o.get("kind") == "Deployment"), None)
        return Owner("Deployment", pod.namespace, str(deployment["name"])) if deployment else None

    def read(self, owner: Owner) -> OwnerState | None:
        """Replicas, available replicas and the surge record; None when the owner is gone."""
        try:
            obj = self._get(owner)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        replicas = spec.get("replicas")
        return OwnerState(
            replicas=int(replicas if replicas is not None else 1),
            available=int(status.get("availableReplicas") or 0),
            record=SurgeRecord.from_json((meta.get("annotations") or {}).get(SURGE_ANNOTATION)),
            resource_version=str(meta.get("resourceVersion", "")),
        )

    def raise_(self, owner: Owner, node: str, surge: int) -> SurgeRecord | None:
        """Raise by ``surge`` and record it; the record (already there when a retry finds its own
        write done), or None when the owner is gone."""

        def change(state: OwnerState) -> dict[str, Any] | None:
            if state.record is not None:
                return None  # raised already: by this drain (a retry), or by another one (its own)
            record = SurgeRecord(node, state.replicas, surge, state.available)
            return {"annotations": record.to_json(), "replicas": record.raised}

        state = self._write(owner, change)
        return state.record if state is not None else None

    def restore(self, owner: Owner, node: str) -> int | None:
        """Set the count the record says and drop the record, if it is this node's drain's; the count
        restored, or None when there was nothing of ours to restore."""
        restored: list[int] = []

        def change(state: OwnerState) -> dict[str, Any] | None:
            if state.record is None or state.record.node != node:
                return None
            restored.append(state.record.original)
            return {"annotations": None, "replicas": state.record.original}

        self._write(owner, change)
        return restored[-1] if restored else None

    def raised(self) -> list[tuple[Owner, SurgeRecord]]:
        """Every Deployment and StatefulSet carrying a surge record, found by its label; an
        unreadable record is not ours to act on and is left out."""
        deployments = self._retry.call(
            f"LIST deployments with {SURGE_LABEL}",
            lambda: _load(
                self._apps.list_deployment_for_all_namespaces(
                    label_selector=SURGE_LABEL, _preload_content=False
                )
            ),
        )
        statefulsets = self._retry.call(
            f"LIST statefulsets with {SURGE_LABEL}",
            lambda: _load(
                self._apps.list_stateful_set_for_all_namespaces(
                    label_selector=SURGE_LABEL, _preload_content=False
                )
            ),
        )
        found: list[tuple[Owner, SurgeRecord]] = []
        for kind, listed in (("Deployment", deployments), ("StatefulSet", statefulsets)):
            for item in listed.get("items") or []:
                meta = item.get("metadata") or {}
                record = SurgeRecord.from_json((meta.get("annotations") or {}).get(SURGE_ANNOTATION))
                if record is not None:
                    found.append((Owner(kind, str(meta.get("namespace")), str(meta.get("name"))), record))
        return found

    # -- one guarded write ------------------------------------------------------------------------

    def _write(
        self, owner: Owner, change: Callable[[OwnerState], dict[str, Any] | None]
    ) -> OwnerState | None:
        for _ in range(CONFLICT_ATTEMPTS):
            state = self.read(owner)
            if state is None:
                return None
            wanted = change(state)
            if wanted is None:
                return state
            body = {
                "metadata": {
                    "resourceVersion": state.resource_version,
                    "annotations": {SURGE_ANNOTATION: wanted["annotations"]},
                    "labels": {SURGE_LABEL: "true" if wanted["annotations"] else None},
                },
                "spec": {"replicas": wanted["replicas"]},
            }
            try:
                self._patch(owner, body)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
                log.info("%s changed while setting its replicas for a drain; reading it again", owner.key)
                continue
            return self.read(owner)
        raise SurgeConflict(owner, CONFLICT_ATTEMPTS)

    def _get(self, owner: Owner) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            if owner.kind == "StatefulSet":
                return _load(
                    self._apps.read_namespaced_stateful_set(
                        owner.name, owner.namespace, _preload_content=False
                    )
                )
            return _load(
                self._apps.read_namespaced_deployment(owner.name, owner.namespace, _preload_content=False)
            )

        return self._retry.call(f"GET {owner.key}", get)

    def _patch(self, owner: Owner, body: dict[str, Any]) -> None:
        # Absolute values under a resourceVersion precondition: sending it again is safe.
        def patch() -> None:
            if owner.kind == "StatefulSet":
                self._apps.patch_namespaced_stateful_set(
                    owner.name, owner.namespace, body, _content_type=MERGE_PATCH, _preload_content=False
                ).drain_conn()
            else:
                self._apps.patch_namespaced_deployment(
                    owner.name, owner.namespace, body, _content_type=MERGE_PATCH, _preload_content=False
                ).drain_conn()

        self._retry.call(f"PATCH {owner.key} replicas", patch)
