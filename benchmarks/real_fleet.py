"""GPU fleets shaped like real clusters' traces (seeded, reproducible), for the planner benchmark.

What makes real fleets harder than :mod:`benchmarks.generator`'s:

* seven GPU models on nodes of 1, 2, 4 or 8 GPUs (cloud families scale CPU and memory with the GPU
  count), so a pod may land on very different hosts and small nodes cannot take big pods;
* no CPU pool: CPU-only pods (about 45% of all pods) run beside the GPU pods and compete for CPU and
  memory, which is what strands GPUs on real hosts;
* a *spreading* scheduler (LeastAllocated over a sample of feasible nodes) places pods while
  workloads come and go: filled to 85% of the GPUs, two rounds of departures and arrivals, then
  departures down to 70%. Fragmentation is what churn under spreading leaves behind.

Two scenarios:

* ``any-model``: GPU pods name no model (the planner may move them to another model);
* ``constrained``: a third of the GPU pods pin their model, half of those with a nodeSelector and half
  with required node affinity ``In`` over two or three models.

Budgets are unbounded (pool budgets ``100%``). Protections stay at real-cluster rates: a few
training and do-not-disrupt pods, PDBs on a quarter of the workloads: half ``minAvailable: 1``,
four in ten ``maxUnavailable: 1``, one in ten at its limit (``disruptionsAllowed: 0``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from benchmarks.generator import CREATED, NOW, ZONES, Generated, _pod_object

SCENARIOS = ("any-model", "constrained")


@dataclass(frozen=True)
class HostType:
    family: str
    model: str
    gpus: int
    cpu: int
    memory_gi: int
    per_1200: int  # nodes of this type in a 1,200-node fleet


MODELS = {
    "h100": "NVIDIA-H100-80GB-HBM3",
    "a100": "NVIDIA-A100-SXM4-80GB",
    "l40s": "NVIDIA-L40S",
    "a10g": "NVIDIA-A10G",
    "l4": "NVIDIA-L4",
    "t4": "Tesla-T4",
    "v100": "Tesla-V100-SXM2-16GB",
}
HOST_TYPES = (
    HostType("h100", MODELS["h100"], 8, 192, 2048, 120),
    HostType("a100", MODELS["a100"], 8, 96, 1152, 150),
    HostType("l40s", MODELS["l40s"], 1, 8, 64, 40),
    HostType("l40s", MODELS["l40s"], 4, 48, 384, 60),
    HostType("l40s", MODELS["l40s"], 8, 192, 1536, 40),
    HostType("a10g", MODELS["a10g"], 1, 8, 32, 80),
    HostType("a10g", MODELS["a10g"], 4, 48, 192, 100),
    HostType("a10g", MODELS["a10g"], 8, 192, 768, 30),
    HostType("l4", MODELS["l4"], 1, 8, 32, 100),
    HostType("l4", MODELS["l4"], 2, 24, 96, 60),
    HostType("l4", MODELS["l4"], 4, 48, 192, 90),
    HostType("l4", MODELS["l4"], 8, 192, 768, 40),
    HostType("t4", MODELS["t4"], 1, 8, 32, 90),
    HostType("t4", MODELS["t4"], 4, 48, 192, 60),
    HostType("v100", MODELS["v100"], 1, 8, 61, 40),
    HostType("v100", MODELS["v100"], 4, 32, 244, 60),
    HostType("v100", MODELS["v100"], 8, 64, 488, 40),
)
GPU_PRICES = {"h100": "5.00", "a100": "3.00", "l40s": "1.50", "a10g": "1.00", "l4": "0.80", "t4": "0.35"}
GPU_PRICES["v100"] = "2.00"
SAMPLE = 10  # feasible nodes the scheduler scores per pod (kube-scheduler samples at this size)


def pool_name(kind: HostType) -> str:
    return f"{kind.family}-{kind.gpus}"


@dataclass
class _Host:
    name: str
    kind: HostType
    zone: str
    free_gpu: int
    free_cpu: int  # millicores
    free_mem: int  # MiB
    pods: set[int] = field(default_factory=set)


@dataclass
class _Workload:
    app: str
    namespace: str
    gpu: int
    cpu: int
    mem: int
    models: tuple[str, ...] | None  # allowed GPU models; None: any
    selector_style: str  # "none" | "nodeSelector" | "affinity"
    training: bool


class _Fleet:
    def __init__(self, node_count: int, rng: random.Random) -> None:
        self.rng = rng
        self.hosts: list[_Host] = []
        for kind in HOST_TYPES:
            for i in range(max(1, round(kind.per_1200 * node_count / 1200))):
                cpu = kind.cpu * 1000 - 200 - 100  # node exporter + DCGM exporter
                mem = kind.memory_gi * 1024 - 640
                name = f"{pool_name(kind)}-{i:05d}"
                self.hosts.append(_Host(name, kind, ZONES[i % len(ZONES)], kind.gpus, cpu, mem))
        self.by_model: dict[str, list[_Host]] = {}
        for h in self.hosts:
            self.by_model.setdefault(h.kind.model, []).append(h)
        self.total_gpus = sum(h.kind.gpus for h in self.hosts)
        self.requested = 0
        self.placed: dict[int, tuple[_Host, _Workload]] = {}
        self.serial = 0
        self.alive: list[int] = []

    def place(self, w: _Workload) -> _Host | None:
        """LeastAllocated over a sample of feasible nodes: how a spreading scheduler fragments."""
        pool = self.hosts if w.models is None else [h for m in w.models for h in self.by_model[m]]
        sample: list[_Host] = []
        for _ in range(8 * SAMPLE):  # random probes first: a full scan per pod is slow at 5,000 nodes
            h = pool[self.rng.randrange(len(pool))]
            if self._fits(h, w) and h not in sample:
                sample.append(h)
                if len(sample) == SAMPLE:
                    break
        if not sample:
            feasible = [h for h in pool if self._fits(h, w)]
            if not feasible:
                return None
            sample = self.rng.sample(feasible, min(SAMPLE, len(feasible)))
        best = max(sample, key=lambda h: (h.free_gpu / h.kind.gpus + h.free_cpu / (h.kind.cpu * 1000)) / 2)
        best.free_gpu -= w.gpu
        best.free_cpu -= w.cpu
        best.free_mem -= w.mem
        self.requested += w.gpu
        self.serial += 1
        best.pods.add(self.serial)
        self.placed[self.serial] = (best, w)
        self.alive.append(self.serial)
        return best

    @staticmethod
    def _fits(h: _Host, w: _Workload) -> bool:
        return h.free_gpu >= w.gpu and h.free_cpu >= w.cpu and h.free_mem >= w.mem

    def depart_random(self) -> None:
        """One pod goes (scale-down, finished job), picked at random."""
        at = self.rng.randrange(len(self.alive))
        pod = self.alive[at]
        self.alive[at] = self.alive[-1]
        self.alive.pop()
        host, w = self.placed.pop(pod)
        host.free_gpu += w.gpu
        host.free_cpu += w.cpu
        host.free_mem += w.mem
        host.pods.discard(pod)
        self.requested -= w.gpu


def _workload(rng: random.Random, serial: int, constrained: bool) -> tuple[_Workload, int]:
    namespace = f"team-{rng.randrange(16):02d}"
    if rng.random() < 0.4:  # CPU-only services beside the GPU pods
        cpu = rng.choice((500, 1000, 2000, 4000, 8000, 16000))
        app = f"svc-{serial}"
        w = _Workload(app, namespace, 0, cpu, cpu * rng.choice((1, 2, 4)), None, "none", False)
        return w, rng.randint(1, 8)
    gpu = rng.choices((1, 2, 4, 8), weights=(85, 8, 5, 2))[0]
    cpu = gpu * rng.choice((4000, 6000, 8000, 12000, 16000))
    mem = gpu * rng.choice((16, 32, 48, 64, 96)) * 1024
    training = rng.random() < 0.04
    models: tuple[str, ...] | None = None
    style = "none"
    if constrained and rng.random() < 1 / 3:
        families = sorted(MODELS)
        if rng.random() < 0.5:
            models, style = (MODELS[rng.choice(families)],), "nodeSelector"
        else:
            models = tuple(MODELS[f] for f in rng.sample(families, rng.choice((2, 3))))
            style = "affinity"
    app = f"{'train' if training else 'infer'}-{serial}"
    replicas = rng.randint(1, 3) if training else rng.randint(1, 8)
    return _Workload(app, namespace, gpu, cpu, mem, models, style, training), replicas


def generate_real(node_count: int = 1200, seed: int = 1, scenario: str = "any-model") -> Generated:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    rng = random.Random(seed)
    fleet = _Fleet(node_count, rng)
    replicas_of: dict[str, int] = {}

    def arrive_until(share: float) -> None:
        failures = 0
        while fleet.requested < share * fleet.total_gpus and failures < 50:
            w, replicas = _workload(rng, fleet.serial, scenario == "constrained")
            replicas_of[w.app] = replicas
            for _ in range(replicas):
                if fleet.place(w) is None:
                    failures += 1

    def depart_until(share: float) -> None:
        while fleet.requested > share * fleet.total_gpus:
            fleet.depart_random()

    arrive_until(0.85)
    for _ in range(2):
        depart_until(0.70)
        arrive_until(0.85)
    depart_until(0.70)
    return Generated(snapshot=_document(fleet, rng, replicas_of), pools=real_pools(), now=NOW)


def _document(fleet: _Fleet, rng: random.Random, replicas_of: dict[str, int]) -> dict[str, Any]:
    items: list[dict[str, Any]] = [_node(h) for h in fleet.hosts]
    for h in fleet.hosts:
        for ds, cpu, mem in (("node-exporter", 100, 128), ("dcgm-exporter", 100, 512)):
            items.append(
                _pod_object(
                    f"{ds}-{h.name}",
                    "monitoring",
                    h.name,
                    gpu=0,
                    cpu=cpu,
                    mem=mem,
                    labels={"app": ds},
                    owner=("DaemonSet", ds),
                    tolerations=[{"operator": "Exists"}],
                )
            )
    pdbs: dict[str, dict[str, Any]] = {}
    for serial in sorted(fleet.placed):
        host, w = fleet.placed[serial]
        pinned = w.selector_style == "nodeSelector" and w.models
        selector = {"nvidia.com/gpu.product": w.models[0]} if pinned and w.models else None
        pod = _pod_object(
            f"{w.app}-{serial}",
            w.namespace,
            host.name,
            gpu=w.gpu,
            cpu=w.cpu,
            mem=w.mem,
            labels={"app": w.app},
            owner=("Job", w.app) if w.training else ("ReplicaSet", f"{w.app}-7d9f"),
            node_selector=selector,
            created=CREATED,
        )
        if w.selector_style == "affinity" and w.models:
            expression = {"key": "nvidia.com/gpu.product", "operator": "In", "values": list(w.models)}
            pod["spec"]["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [expression]}]
                    }
                }
            }
        roll = rng.random()
        if roll < 0.008:
            pod["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] = "true"
        elif roll < 0.012:
            pod["metadata"].pop("ownerReferences", None)  # a bare pod someone started by hand
        items.append(pod)
        if w.app not in pdbs and rng.random() < 0.25:
            replicas = replicas_of.get(w.app, 1)
            roll = rng.random()  # minAvailable: 1 / maxUnavailable: 1 / at its limit
            allowed = max(1, replicas - 1) if roll < 0.5 else (1 if roll < 0.9 else 0)
            pdbs[w.app] = {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": w.app, "namespace": w.namespace},
                "spec": {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": w.app}}},
                "status": {"disruptionsAllowed": allowed, "currentHealthy": replicas, "desiredHealthy": 1},
            }
    items.extend(pdbs[k] for k in sorted(pdbs))
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _node(h: _Host) -> dict[str, Any]:
    allocatable = {
        "cpu": str(h.kind.cpu),
        "memory": f"{h.kind.memory_gi}Gi",
        "pods": "110",
        "nvidia.com/gpu": str(h.kind.gpus),
    }
    labels = {
        "kubernetes.io/hostname": h.name,
        "kubernetes.io/os": "linux",
        "topology.kubernetes.io/zone": h.zone,
        "rightsizer.io/pool": pool_name(h.kind),
        "node.kubernetes.io/instance-type": pool_name(h.kind),
        "nvidia.com/gpu.product": h.kind.model,
        "nvidia.com/gpu.count": str(h.kind.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": h.name, "labels": labels, "annotations": {}, "creationTimestamp": CREATED},
        "spec": {"providerID": f"kwok://{h.name}"},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def real_pools() -> list[dict[str, Any]]:
    """One GPUNodePool per host type; budgets unbounded, so the benchmark measures packing."""
    docs = []
    for kind in HOST_TYPES:
        spec: dict[str, Any] = {
            "nodeSelector": {"rightsizer.io/pool": pool_name(kind)},
            "consolidationPolicy": "WhenUnderutilized",
            "consolidateAfter": "10m",
            "disruption": {"budgets": [{"nodes": "100%"}]},
            "provider": {"type": "kwok"},
            "gpuModel": kind.model,
            "gpusPerNode": kind.gpus,
            "pricePerGpuHour": GPU_PRICES[kind.family],
        }
        docs.append(
            {
                "apiVersion": "rightsizer.io/v1alpha1",
                "kind": "GPUNodePool",
                "metadata": {"name": pool_name(kind)},
                "spec": spec,
            }
        )
    return docs
