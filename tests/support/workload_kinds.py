"""GPU workload kinds on the local control plane: the real RayCluster, RayJob, PyTorchJob, TrainJob and
InferenceService CRDs (fetched by hack/tools.sh from the KubeRay, Kubeflow training-operator and
trainer, and KServe modules into the tool cache), stand-in CRDs for JobSet, LeaderWorkerSet and
Kubeflow's Notebook (no module the proxy serves holds theirs), objects each schema accepts, and the
pods their controllers would create (no controller runs here: the tests play them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.cluster import ROOT, Cluster, wait_for

GPU_NODE_SELECTOR = {"type": "kwok"}


def _pins() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _cached_crds(*files: tuple[str, str, str]) -> list[Path]:
    """CRD files hack/tools.sh fetched: (cache name, version pin, file) each."""
    pins = _pins()
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer")) / "crds"
    found = [cache / f"{name}-{pins[pin]}" / file for name, pin, file in files]
    missing = [str(f) for f in found if not f.is_file()]
    assert not missing, f"run hack/tools.sh: workload CRDs missing: {missing}"
    return found


def real_crd_files() -> list[Path]:
    return _cached_crds(
        ("kuberay", "KUBERAY_VERSION", "ray.io_rayclusters.yaml"),
        ("training-operator", "TRAINING_OPERATOR_VERSION", "kubeflow.org_pytorchjobs.yaml"),
    )


def stop_kind_crd_files() -> list[Path]:
    """The kinds stopped by spec.suspend or an annotation with no replica count of their own."""
    return _cached_crds(
        ("kuberay", "KUBERAY_VERSION", "ray.io_rayjobs.yaml"),
        ("trainer", "TRAINER_VERSION", "trainer.kubeflow.org_trainjobs.yaml"),
        ("kserve", "KSERVE_VERSION", "serving.kserve.io_inferenceservices.yaml"),
    )


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

# Stand-ins, not the real CRDs (no package registry serves JobSet's, LeaderWorkerSet's or the Kubeflow
# notebook controller's): the real group, version and kind, the fields the operator touches, and the
# subresources the real ones have.
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
# Kubeflow's Notebook: status only, no /scale; the kubeflow-resource-stopped annotation stops it.
NOTEBOOK_STAND_IN = _stand_in("kubeflow.org", "Notebook", "notebooks", "v1", {"template": _ANY}, scale=None)
CRD_NAMES = [
    "rayclusters.ray.io",
    "pytorchjobs.kubeflow.org",
    "jobsets.jobset.x-k8s.io",
    "leaderworkersets.leaderworkerset.x-k8s.io",
]


def _install(cluster: Cluster, files: list[Path], stand_ins: list[dict[str, Any]], names: list[str]) -> None:
    """Server-side (the real CRDs outgrow the last-applied annotation); idempotent."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", *[a for f in files for a in ("-f", str(f))]
    )
    if stand_ins:
        cluster.apply(stand_ins)
    # Just created, a CRD may have no status yet, which `kubectl wait` takes as an error: ask again.
    established = ("wait", "--for=condition=Established", *[f"crd/{n}" for n in names], "--timeout=10s")
    wait_for(lambda: cluster.kubectl(*established, check=False).returncode == 0, timeout=60)


def install_crds(cluster: Cluster) -> None:
    _install(cluster, real_crd_files(), STAND_INS, CRD_NAMES)


def install_cached_crds(cluster: Cluster, files: list[tuple[str, str, str]], names: list[str]) -> None:
    """Real CRDs from the tool cache, (cache name, version pin, file) each, until established."""
    _install(cluster, _cached_crds(*files), [], names)


def install_stop_kind_crds(cluster: Cluster) -> None:
    """RayJob, TrainJob, InferenceService (real) and Notebook (stand-in)."""
    names = [
        "rayjobs.ray.io",
        "trainjobs.trainer.kubeflow.org",
        "inferenceservices.serving.kserve.io",
        "notebooks.kubeflow.org",
    ]
    _install(cluster, stop_kind_crd_files(), [NOTEBOOK_STAND_IN], names)


def install_kueue_workload_crd(cluster: Cluster) -> None:
    """Kueue's real Workload CRD (its controller does not run: the tests play it)."""
    crd = _cached_crds(("kueue", "KUEUE_VERSION", "kueue.x-k8s.io_workloads.yaml"))
    _install(cluster, crd, [], ["workloads.kueue.x-k8s.io"])


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


def ray_job(name: str) -> dict[str, Any]:
    """A RayJob (KubeRay writes the name of the RayCluster it creates to its status)."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "python train.py",
            "suspend": False,
            "shutdownAfterJobFinishes": True,
            "rayClusterSpec": ray_cluster(name, 1)["spec"],
        },
    }


def train_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "suspend": False, "trainer": {"numNodes": 2}},
    }


def inference_service(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                },
            }
        },
    }


def notebook(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Notebook",
        "metadata": {"name": name},
        "spec": {"template": _pod_template()},
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
