"""GPU workload kinds on the local control plane: the real RayCluster and PyTorchJob CRDs (fetched by
hack/tools.sh from the KubeRay and Kubeflow training-operator modules into the tool cache), stand-in
CRDs for JobSet and LeaderWorkerSet (no module serves theirs), objects each schema accepts, and the
pods their controllers would create (no controller runs here: the tests play them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.cluster import ROOT, Cluster

GPU_NODE_SELECTOR = {"type": "kwok"}


def _pins() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def real_crd_files() -> list[Path]:
    pins = _pins()
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer")) / "crds"
    files = [
        cache / f"kuberay-{pins['KUBERAY_VERSION']}" / "ray.io_rayclusters.yaml",
        cache / f"training-operator-{pins['TRAINING_OPERATOR_VERSION']}" / "kubeflow.org_pytorchjobs.yaml",
    ]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"run hack/tools.sh: workload CRDs missing: {missing}"
    return files


def _stand_in(
    group: str, kind: str, plural: str, version: str, spec: dict[str, Any], *, scale: dict[str, str] | None
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale is not None:
        subresources["scale"] = scale
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": spec},
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


_ANY = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

# Stand-ins, not the real CRDs (no package registry serves JobSet's or LeaderWorkerSet's): the real
# group, version and kind, the fields the operator touches, and the subresources the real ones have.
STAND_INS = [
    # JobSet: status only, no /scale; spec.suspend stops every child Job.
    _stand_in(
        "jobset.x-k8s.io",
        "JobSet",
        "jobsets",
        "v1alpha2",
        {"suspend": {"type": "boolean"}, "replicatedJobs": {"type": "array", "items": _ANY}},
        scale=None,
    ),
    # LeaderWorkerSet: /scale counts groups and selects leaders through status.hpaPodSelector.
    _stand_in(
        "leaderworkerset.x-k8s.io",
        "LeaderWorkerSet",
        "leaderworkersets",
        "v1",
        {"replicas": {"type": "integer"}, "leaderWorkerTemplate": _ANY},
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.hpaPodSelector",
        },
    ),
]
CRD_NAMES = [
    "rayclusters.ray.io",
    "pytorchjobs.kubeflow.org",
    "jobsets.jobset.x-k8s.io",
    "leaderworkersets.leaderworkerset.x-k8s.io",
]


def install_crds(cluster: Cluster) -> None:
    """Server-side (the real CRDs outgrow the last-applied annotation); idempotent."""
    files = [a for f in real_crd_files() for a in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.apply(STAND_INS)
    names = [f"crd/{n}" for n in CRD_NAMES]
    cluster.kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")


def _pod_template(gpus: int = 1) -> dict[str, Any]:
    return {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "trainer",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        }
    }


def ray_cluster(name: str, workers: int, *, groups: int = 1, autoscaling: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "enableInTreeAutoscaling": autoscaling,
            "headGroupSpec": {"rayStartParams": {}, "template": _pod_template(0)},
            "workerGroupSpecs": [
                {
                    "groupName": f"gpu-{i}",
                    "replicas": workers,
                    "minReplicas": 0,
                    "maxReplicas": 8,
                    "rayStartParams": {},
                    "template": _pod_template(),
                }
                for i in range(groups)
            ],
        },
    }


def pytorch_job(name: str, workers: int) -> dict[str, Any]:
    replica = {"restartPolicy": "OnFailure", "template": _pod_template()}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "runPolicy": {"suspend": False},
            "pytorchReplicaSpecs": {
                "Master": {**replica, "replicas": 1},
                "Worker": {**replica, "replicas": workers},
            },
        },
    }


def jobset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {"suspend": False, "replicatedJobs": [{"name": "workers", "replicas": 2}]},
    }


def leader_worker_set(name: str, groups: int) -> dict[str, Any]:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {"replicas": groups, "leaderWorkerTemplate": {"size": 2}},
    }


def batch_job(name: str, parallelism: int) -> dict[str, Any]:
    template = _pod_template()
    template["spec"] |= {"restartPolicy": "Never", "nodeSelector": GPU_NODE_SELECTOR}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"parallelism": parallelism, "suspend": True, "template": template},
    }


def pod(name: str, labels: dict[str, str], node: str | None = None, gpus: int = 1) -> dict[str, Any]:
    """A pod as the kind's controller would create it: its labels, a GPU, on a kwok node."""
    spec: dict[str, Any] = {
        "containers": [
            {"name": "main", "image": "trainer", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        ],
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
    }
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}
