"""A cluster in memory for the workload loop: fake targets, an indexed view and a fake metrics source.

Used by the reconciler's unit tests and by the reconcile-loop benchmark."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rightsizer.adapters.cluster_view import IndexedView, ScalerRef
from rightsizer.adapters.fake_kube import FakeTargets
from rightsizer.adapters.kube import PodInfo, TargetRef
from rightsizer.adapters.metrics.fake import FakeGpuMetricsSource
from rightsizer.runtime.decision_record import Recorder
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workloads import WorkloadReconciler

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class MemoryCluster:
    def __init__(self, interval: float = 30, now: datetime = T0, recorder: Recorder | None = None) -> None:
        self.now = now
        self.targets = FakeTargets()
        self.metrics = FakeGpuMetricsSource(clock=lambda: self.now)
        self.pods: dict[str, list[PodInfo]] = {}
        self.nodes: dict[str, list[dict[str, str]]] = {
            f"node-{i}": [{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}] for i in range(1000)
        }
        self.hpas: dict[str, list[ScalerRef]] = {}
        self.workloads: dict[str, list[ScalerRef]] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.telemetry = Telemetry()
        self.reconciler = WorkloadReconciler(
            self.targets,
            {"Prometheus": self.metrics},
            Settings(interval_seconds=interval),
            self.telemetry,
            recorder,
        )

    def view(self) -> IndexedView:
        return IndexedView(
            pods=self.pods,
            nodes=self.nodes,
            hpas=self.hpas,
            scaled_objects={},
            workloads=self.workloads,
            pools={},
        )

    def deployment(self, ns: str, name: str, replicas: int, util: float | None, gpus: int = 1) -> None:
        ref = TargetRef("apps/v1", "Deployment", name)
        self.targets.add(ns, ref, replicas, f"app={name}")
        self.set_pods(ns, name, replicas, util, gpus)

    def set_pods(self, ns: str, name: str, replicas: int, util: float | None, gpus: int = 1) -> None:
        others = [p for p in self.pods.get(ns, []) if p.labels.get("app") != name]
        labels = {"app": name}
        one_gib = Decimal(2**30)
        mine = [
            PodInfo(
                f"{name}-{i}",
                f"node-{i % 1000}",
                "Running",
                True,
                gpus,
                Decimal(1),
                one_gib,
                {},
                labels,
                gpu_requests={"nvidia.com/gpu": Decimal(gpus)},
            )
            for i in range(replicas)
        ]
        self.pods[ns] = others + mine
        if util is not None:
            for pod in mine:
                for g in range(gpus):
                    self.metrics.record(ns, pod.name, util, at=self.now, gpu=str(g))

    def workload(self, ns: str, name: str, **spec: Any) -> None:
        body = {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "workloadType": "Inference",
            "mode": "Enforce",
            "targetUtilization": 60,
            "minReplicas": 1,
            "maxReplicas": 10,
            "metric": {"window": "0s"},
            **spec,
        }
        created = f"2026-11-25T00:00:{len(self.objects):02d}Z"
        meta = {
            "namespace": ns,
            "name": name,
            "generation": 1,
            "creationTimestamp": created,
            "annotations": {},
        }
        self.objects[(ns, name)] = {"metadata": meta, "spec": body, "status": {}}
        self.workloads.setdefault(ns, []).append(
            ScalerRef(f"GPUWorkload/{name}", "Deployment", name, "apps", created)
        )

    def reconcile(self, ns: str, name: str) -> Any:
        obj = self.objects[(ns, name)]
        writes = len(self.targets.writes)
        result = self.reconciler.reconcile(obj, now=self.now, view=self.view())
        # Pods show the annotations written to them, as the operator's pod index does once the watch
        # event of its own patch arrives.
        annotated = {w[2] for w in self.targets.writes[writes:] if w[0] == "annotate-pod" and w[1] == ns}
        if annotated:
            written = self.targets.pod_annotations
            self.pods[ns] = [
                replace(p, annotations={**p.annotations, **written[(ns, p.name)]})
                if p.name in annotated
                else p
                for p in self.pods[ns]
            ]
        obj["status"] = result.status
        obj["metadata"]["annotations"].update({k: v for k, v in result.annotations.items() if v is not None})
        return result

    def replicas(self, ns: str, name: str) -> int:
        return self.targets.scales[(ns, "Deployment", name)].desired
