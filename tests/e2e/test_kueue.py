"""Jobs queued by the real Kueue (its manager, webhooks and certificates: tests/support/kueue.py),
through the real operator with the chart's RBAC for Jobs and Kueue Workloads. The queue's quota fits
one GPU job: Kueue admits the first, whose pod runs on a fake GPU node, and keeps the second waiting.
The first is idle: the operator deactivates its Workload, Kueue evicts it and frees the quota, and
admits the second. The jobs' own suspend fields are Kueue's alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.chart import chart_identity
from tests.support.cluster import Cluster, GpuUtilization, wait_for
from tests.support.kueue import GROUP, QUEUE_LABEL, VERSION, Kueue
from tests.support.operator_process import OperatorProcess
from tests.support.world import gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

QUOTA = {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
"""One job's GPU: the second job waits for the first's."""
KEEP_RUNNING = "kwok.rightsizer.io/keep-running"
"""kwok completes a Job's pod at once; so annotated it runs until deleted (hack/cluster.sh)."""
JOB_NAME = "batch.kubernetes.io/job-name"
IDLE = {"thresholdPercent": 5, "idleFor": "5s", "action": "Suspend"}


@pytest.fixture(scope="module")
def kueue(cluster: Cluster) -> Iterator[Kueue]:
    with Kueue.start(cluster, QUOTA) as running:
        yield running


@pytest.fixture
def identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("kueue-identity")
    with chart_identity(
        cluster.kubeconfig, workdir, {"rbac": {"workloadKinds": ["Job", "Kueue"]}}
    ) as kubeconfig:
        yield kubeconfig


def queued_job(name: str, queue: str) -> dict[str, Any]:
    """A one-pod GPU Job submitted to `queue`, as a user writes it: Kueue's webhook suspends it."""
    template = gpu_deployment(name, 1)["spec"]["template"]
    template["metadata"] = {"annotations": {KEEP_RUNNING: "true"}}
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 0, "template": template},
    }


def condition(workload: dict[str, Any] | None, kind: str) -> bool:
    conditions = ((workload or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def waiting_for_gpus(workload: dict[str, Any] | None) -> bool:
    """Kueue reserved no quota for it: the queue's GPUs are taken."""
    conditions = ((workload or {}).get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "QuotaReserved"
        and c.get("status") == "False"
        and c.get("reason") == "Pending"
        and "quota for nvidia.com/gpu" in c.get("message", "")
        for c in conditions
    )


def suspend_managers(job: client.V1Job) -> set[str]:
    """The field managers that own the Job's spec.suspend."""
    return {
        entry.manager
        for entry in job.metadata.managed_fields or []
        if "f:suspend" in ((entry.fields_v1 or {}).get("f:spec") or {})
    }


def test_an_idle_admitted_job_is_deactivated_through_its_workload_and_kueue_admits_the_waiting_one(
    cluster: Cluster, namespace: str, gpu_util: GpuUtilization, kueue: Kueue, identity: str
) -> None:
    queue = kueue.local_queue(namespace)
    batch = client.BatchV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)

    def job(name: str) -> client.V1Job:
        return batch.read_namespaced_job(name, namespace)

    def workload(name: str) -> dict[str, Any] | None:
        return kueue.workload_of(namespace, job(name))

    def running_on_gpu_node(name: str) -> str | None:
        """The node the job's pod runs on, once it runs on a fake GPU node."""
        for pod in core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME}={name}").items:
            node = pod.spec.node_name
            if pod.status.phase == "Running" and node and pod.metadata.deletion_timestamp is None:
                labels = core.read_node(node).metadata.labels or {}
                if labels.get("type") == "kwok" and "nvidia.com/gpu.product" in labels:
                    return str(node)
        return None

    def seen() -> str:
        lines = []
        for name in ("idle", "waiting"):
            with suppress(ApiException):
                wl = workload(name) or {}
                conditions = [
                    (c["type"], c["status"], c.get("reason"), c.get("message"))
                    for c in (wl.get("status") or {}).get("conditions") or []
                ]
                active = (wl.get("spec") or {}).get("active")
                lines.append(f"{name}: suspend={job(name).spec.suspend} active={active} {conditions}")
        return "\n".join([*lines, "--- kueue", kueue.log()[-3000:]])

    cluster.apply(queued_job("idle", queue), namespace)
    wait_for(lambda: condition(workload("idle"), "Admitted"), timeout=60, describe=seen)
    wait_for(lambda: running_on_gpu_node("idle"), timeout=60, describe=seen)
    assert job("idle").spec.suspend is False, "Kueue started the job it admitted"
    cluster.apply(queued_job("waiting", queue), namespace)
    wait_for(lambda: waiting_for_gpus(workload("waiting")), timeout=60, describe=seen)
    assert job("waiting").spec.suspend is True, "Kueue's webhook suspended it, and Kueue keeps it so"

    gpu_util.set(namespace, 0, selector={JOB_NAME: "idle"})
    gpu_util.set(namespace, 90, selector={JOB_NAME: "waiting"})
    cluster.apply(
        gpu_workload(
            "idle",
            "idle",
            targetRef={"apiVersion": "batch/v1", "kind": "Job", "name": "idle"},
            workloadType="Training",
            minReplicas=None,
            maxReplicas=None,
            idlePolicy=IDLE,
        ),
        namespace,
    )
    with OperatorProcess.start(
        cluster.kubeconfig, namespace, cluster.prometheus_url, identity=identity, cluster_wide=True
    ) as operator:

        def described() -> str:
            return f"{seen()}\n--- operator\n{operator.log()[-3000:]}"

        wait_for(
            lambda: (workload("idle") or {})["spec"].get("active") is False, timeout=90, describe=described
        )
        # Kueue evicts the deactivated job (suspends it, its pod goes) and frees its quota...
        wait_for(lambda: condition(workload("idle"), "Evicted"), timeout=60, describe=described)
        wait_for(lambda: job("idle").spec.suspend is True, timeout=60, describe=described)
        # ...which admits the waiting job: Kueue starts it and its pod runs on a fake GPU node.
        wait_for(lambda: condition(workload("waiting"), "Admitted"), timeout=60, describe=described)
        wait_for(lambda: running_on_gpu_node("waiting"), timeout=60, describe=described)
        wait_for(lambda: running_on_gpu_node("idle") is None, timeout=60, describe=described)
        assert job("waiting").spec.suspend is False

    deactivated = workload("idle")
    assert deactivated is not None and deactivated["apiVersion"] == f"{GROUP}/{VERSION}"
    assert not condition(deactivated, "QuotaReserved"), "the idle job's quota is free"
    # Who wrote what: the operator wrote the Workload's spec.active, and Kueue every job's spec.suspend.
    by_operator = {
        entry["manager"]
        for entry in deactivated["metadata"]["managedFields"]
        if "f:active" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }
    assert len(by_operator) == 1 and "kueue" not in by_operator, deactivated["metadata"]["managedFields"]
    for name in ("idle", "waiting"):
        managers = suspend_managers(job(name))
        assert not managers & by_operator, (
            f"{name}: the operator never wrote the job's own suspend ({managers})"
        )
        assert managers == {"kueue"}, f"{name}: spec.suspend is Kueue's ({managers})"
        assert job(name).spec.parallelism == 1, f"{name}: the admitted count is Kueue's, never changed"
