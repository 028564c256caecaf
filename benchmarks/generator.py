"""Realistic, fragmented cluster snapshots for the planner benchmark (seeded, reproducible).

How a fragmented GPU cluster comes about, replayed in miniature:

1. Nodes: A100 (8 GPUs), H100 (8 GPUs, tainted ``nvidia.com/gpu:NoSchedule``), L4 (4 GPUs) and CPU
   nodes over three zones, each with DaemonSet pods (node exporter; DCGM exporter on GPU nodes).
2. Workloads arrive and a *spreading* scheduler (least-allocated of a few random feasible nodes, like
   the default LeastAllocated score) places them until pools are ~85% requested: GPU inference
   Deployments of 1/2/4/8-GPU pods (most pin their GPU model with a nodeSelector), training Jobs,
   CPU Deployments (some zone-pinned, some with per-node anti-affinity, a few landing on untainted
   GPU nodes — the "CPU pod pins a GPU node" problem).
3. Then ~45% of the pods go away (scale-downs, finished jobs) at random, leaving half-empty nodes.

Protections sprinkled in: PDBs (some at their limit), ``do-not-disrupt`` pods, bare pods, training
pods, pods with emptyDir volumes (some marked safe to evict).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rightsizer.core.budgets import NodeBudget
from rightsizer.core.pools import PoolPolicy
from rightsizer.core.snapshot import LabelSelector
from rightsizer.runtime.mapping import read_pools

NOW = "2026-06-01T00:00:00Z"
CREATED = "2026-05-01T00:00:00Z"
EPOCH = datetime(2026, 5, 1, tzinfo=UTC)
ZONES = ("zone-a", "zone-b", "zone-c")


@dataclass(frozen=True)
class NodeType:
    pool: str
    model: str | None
    gpus: int
    cpu: int
    memory_gi: int
    share: float  # fraction of the cluster's nodes
    tainted: bool = False


NODE_TYPES = (
    NodeType("a100", "NVIDIA-A100-SXM4-80GB", 8, 96, 1024, 0.30),
    NodeType("h100", "NVIDIA-H100-80GB-HBM3", 8, 192, 2048, 0.15, tainted=True),
    NodeType("l4", "NVIDIA-L4", 4, 48, 192, 0.25),
    NodeType("cpu", None, 0, 32, 128, 0.30),
)
PRICES = {"a100": "3.00", "h100": "5.00", "l4": "0.80"}
CPU_NODE_PRICE = "1.28"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass
class _Node:
    name: str
    kind: NodeType
    zone: str
    free_gpu: int
    free_cpu: int  # millicores
    free_mem: int  # MiB
    pods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Generated:
    snapshot: dict[str, Any]  # a `kubectl get nodes,pods,pdb -A -o json` List
    pools: list[dict[str, Any]]  # GPUNodePool documents
    now: str
    cpu_pools: tuple[PoolPolicy, ...] = ()  # pools of CPU nodes, which no GPUNodePool describes

    def policies(self) -> tuple[PoolPolicy, ...]:
        """Every pool as the planner gets it: the GPUNodePools as the operator reads them."""
        return (*read_pools(self.pools), *self.cpu_pools)


def _node_object(n: _Node) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "topology.kubernetes.io/zone": n.zone,
        "rightsizer.io/pool": n.kind.pool,
        "node.kubernetes.io/instance-type": f"{n.kind.pool}-{n.kind.gpus or n.kind.cpu}",
    }
    allocatable = {
        "cpu": str(n.kind.cpu),
        "memory": f"{n.kind.memory_gi}Gi",
        "pods": "110",
        "ephemeral-storage": "500Gi",
    }
    if n.kind.model:
        labels["nvidia.com/gpu.product"] = n.kind.model
        labels["nvidia.com/gpu.count"] = str(n.kind.gpus)
        allocatable["nvidia.com/gpu"] = str(n.kind.gpus)
    spec: dict[str, Any] = {"providerID": f"kwok://{n.name}"}
    if n.kind.tainted:
        spec["taints"] = [GPU_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.name, "labels": labels, "annotations": {}, "creationTimestamp": CREATED},
        "spec": spec,
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod_object(
    name: str,
    namespace: str,
    node: str,
    *,
    gpu: int,
    cpu: int,
    mem: int,
    labels: dict[str, str],
    owner: tuple[str, str] | None,
    annotations: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    anti_affinity: dict[str, str] | None = None,
    created: str = CREATED,
) -> dict[str, Any]:
    requests = {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}
    limits: dict[str, str] = {"memory": f"{mem}Mi"}
    if gpu:
        requests["nvidia.com/gpu"] = str(gpu)
        limits["nvidia.com/gpu"] = str(gpu)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations or {},
        "creationTimestamp": created,
    }
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": owner[1], "controller": True}
        ]
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [
            {
                "name": "main",
                "image": "registry.local/app:1",
                "resources": {"requests": requests, "limits": limits},
            }
        ],
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            *(tolerations or []),
        ],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if volumes:
        spec["volumes"] = volumes
    if anti_affinity:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": anti_affinity}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Running", "startTime": created},
    }


class _Cluster:
    def __init__(self, node_count: int, rng: random.Random) -> None:
        self.rng = rng
        self.nodes: list[_Node] = []
        self.by_pool: dict[str, list[_Node]] = {}
        counts = [round(node_count * t.share) for t in NODE_TYPES]
        counts[-1] += node_count - sum(counts)
        for kind, count in zip(NODE_TYPES, counts, strict=True):
            for i in range(count):
                n = _Node(
                    name=f"{kind.pool}-{i:05d}",
                    kind=kind,
                    zone=ZONES[i % len(ZONES)],
                    free_gpu=kind.gpus,
                    free_cpu=kind.cpu * 1000,
                    free_mem=kind.memory_gi * 1024,
                )
                self.nodes.append(n)
                self.by_pool.setdefault(kind.pool, []).append(n)
        self.pods: list[tuple[_Node, dict[str, Any]]] = []
        self.daemons: list[dict[str, Any]] = []
        for n in self.nodes:
            self._daemon(n, "node-exporter", 100, 128, host_port=9100)
            if n.kind.gpus:
                self._daemon(n, "dcgm-exporter", 100, 512)

    def _daemon(self, n: _Node, ds: str, cpu: int, mem: int, host_port: int | None = None) -> None:
        n.free_cpu -= cpu
        n.free_mem -= mem
        pod = _pod_object(
            f"{ds}-{n.name}",
            "monitoring",
            n.name,
            gpu=0,
            cpu=cpu,
            mem=mem,
            labels={"app": ds},
            owner=("DaemonSet", ds),
            tolerations=[{"operator": "Exists"}],
        )
        if host_port:
            pod["spec"]["containers"][0]["ports"] = [{"containerPort": host_port, "hostPort": host_port}]
        self.daemons.append(pod)

    def place(
        self, candidates: list[_Node], gpu: int, cpu: int, mem: int, avoid: set[str] | None = None
    ) -> _Node | None:
        """Least-allocated of a few random feasible nodes: how a spreading scheduler fragments."""
        best: _Node | None = None
        best_score = -1.0
        for n in self.rng.sample(candidates, min(6, len(candidates))):
            if n.free_gpu < gpu or n.free_cpu < cpu or n.free_mem < mem or (avoid and n.name in avoid):
                continue
            score = (n.free_gpu / n.kind.gpus if n.kind.gpus else 0) + n.free_cpu / (n.kind.cpu * 1000)
            if score > best_score:
                best, best_score = n, score
        if best is not None:
            best.free_gpu -= gpu
            best.free_cpu -= cpu
            best.free_mem -= mem
        return best


def generate(node_count: int, seed: int = 1) -> Generated:
    rng = random.Random(seed)
    cluster = _Cluster(node_count, rng)
    pdbs: list[dict[str, Any]] = []
    serial = 0

    def arrival() -> str:
        """Creation times in arrival order, so a scheduler replay sees pods as they came."""
        return (EPOCH + timedelta(seconds=len(cluster.pods))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def protections(pod: dict[str, Any]) -> None:
        roll = rng.random()
        if roll < 0.006:
            pod["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] = "true"
        elif roll < 0.009:
            pod["metadata"]["annotations"]["rightsizer.io/do-not-disrupt"] = "true"
        elif roll < 0.011:
            pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] = "false"
        elif roll < 0.013:
            pod["metadata"].pop("ownerReferences", None)  # a bare pod someone started by hand

    def add_pdb(namespace: str, app: str) -> None:
        if rng.random() < 0.3:
            allowed = rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5, 5))
            pdbs.append(
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {"name": app, "namespace": namespace},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
                    "status": {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 2},
                }
            )

    # GPU workloads, pool by pool, until ~85% of the GPUs are requested.
    for kind in NODE_TYPES:
        if not kind.gpus:
            continue
        nodes = cluster.by_pool[kind.pool]
        target = int(len(nodes) * kind.gpus * 0.85)
        placed = failures = 0
        while placed < target and failures < 200:
            serial += 1
            namespace = f"team-{rng.randrange(12):02d}"
            sizes = (1, 2, 4, 8) if kind.gpus == 8 else (1, 2, 4)
            gpu = rng.choices(sizes, weights=(5, 3, 2, 1)[: len(sizes)])[0]
            training = rng.random() < 0.08
            app = f"{'train' if training else 'infer'}-{kind.pool}-{serial}"
            replicas = rng.randint(1, 3) if training else rng.randint(1, 6)
            labels = {"app": app, "rightsizer.io/workload-type": "Training" if training else "Inference"}
            selector = {"nvidia.com/gpu.product": kind.model or ""} if rng.random() < 0.8 else None
            owner = ("Job", app) if training else ("ReplicaSet", f"{app}-7d9f")
            cpu_per_gpu = rng.choice((4000, 6000, 8000)) if kind.gpus == 8 else rng.choice((4000, 6000))
            mem_per_gpu = rng.choice((32, 48, 64)) * 1024 if kind.gpus == 8 else rng.choice((16, 24)) * 1024
            add_pdb(namespace, app)
            for r in range(replicas):
                node = cluster.place(nodes, gpu, cpu_per_gpu * gpu // 2, mem_per_gpu * gpu // 2)
                if node is None:
                    failures += 1
                    continue
                pod = _pod_object(
                    f"{app}-{r}",
                    namespace,
                    node.name,
                    gpu=gpu,
                    cpu=cpu_per_gpu * gpu // 2,
                    mem=mem_per_gpu * gpu // 2,
                    labels=dict(labels),
                    owner=owner,
                    node_selector=selector,
                    tolerations=[GPU_TOLERATION],
                    created=arrival(),
                )
                protections(pod)
                cluster.pods.append((node, pod))
                placed += gpu

    # CPU workloads: mostly on CPU nodes, a few on untainted GPU nodes.
    cpu_nodes = cluster.by_pool["cpu"]
    loose_gpu_nodes = cluster.by_pool["a100"] + cluster.by_pool["l4"]
    target_cpu = int(len(cpu_nodes) * NODE_TYPES[-1].cpu * 1000 * 0.8)
    placed = failures = 0
    while placed < target_cpu and failures < 200:
        serial += 1
        namespace = f"team-{rng.randrange(12):02d}"
        app = f"web-{serial}"
        replicas = rng.randint(2, 10)
        cpu = rng.choice((250, 500, 1000, 2000, 4000))
        mem = cpu * rng.choice((1, 2, 4))
        zone = rng.choice(ZONES) if rng.random() < 0.1 else None
        anti = rng.random() < 0.05
        local = rng.random()
        add_pdb(namespace, app)
        pool = [n for n in cpu_nodes if zone is None or n.zone == zone]
        spread_on_node: set[str] = set()
        for r in range(replicas):
            on_gpu = rng.random() < 0.04
            node = cluster.place(
                loose_gpu_nodes if on_gpu else pool, 0, cpu, mem, avoid=spread_on_node if anti else None
            )
            if node is None:
                failures += 1
                continue
            if anti:
                spread_on_node.add(node.name)
            annotations: dict[str, str] = {}
            volumes = None
            if local < 0.04:
                volumes = [{"name": "scratch", "emptyDir": {}}]
                if local < 0.03:
                    annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] = "true"
            pod = _pod_object(
                f"{app}-{r}",
                namespace,
                node.name,
                gpu=0,
                cpu=cpu,
                mem=mem,
                labels={"app": app},
                owner=("ReplicaSet", f"{app}-5c8b"),
                annotations=annotations,
                node_selector={"topology.kubernetes.io/zone": zone} if zone else None,
                volumes=volumes,
                anti_affinity={"app": app} if anti else None,
                created=arrival(),
            )
            protections(pod)
            cluster.pods.append((node, pod))
            placed += cpu

    # Scale-downs and finished jobs: ~45% of the workload pods disappear.
    survivors = [pod for _, pod in cluster.pods if rng.random() >= 0.45]
    items = [_node_object(n) for n in cluster.nodes] + cluster.daemons + survivors + pdbs
    snapshot = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
    return Generated(snapshot=snapshot, pools=pool_documents(), now=NOW, cpu_pools=cpu_pools())


def cpu_pools(budget: str = "100%") -> tuple[PoolPolicy, ...]:
    """The CPU nodes' pool, with the GPU pools' policy: a GPUNodePool has GPUs, so this one is the
    core's policy directly (the planner consolidates CPU nodes of a pool like any other)."""
    return tuple(
        PoolPolicy(
            name=kind.pool,
            node_selector=LabelSelector(match_labels=(("rightsizer.io/pool", kind.pool),)),
            price_per_node_hour=Decimal(CPU_NODE_PRICE),
            consolidate_after=timedelta(minutes=10),
            budgets=(NodeBudget(nodes=budget),),
            provider="kwok",
        )
        for kind in NODE_TYPES
        if not kind.model
    )


def pool_documents(budget: str = "100%") -> list[dict[str, Any]]:
    """One GPUNodePool per GPU node type. The benchmark measures packing, so budgets allow everything."""
    docs = []
    for kind in NODE_TYPES:
        if not kind.model:
            continue
        spec: dict[str, Any] = {
            "nodeSelector": {"rightsizer.io/pool": kind.pool},
            "consolidationPolicy": "WhenUnderutilized",
            "consolidateAfter": "10m",
            "disruption": {"budgets": [{"nodes": budget}]},
            "provider": {"type": "kwok"},
            "gpuModel": kind.model,
            "gpusPerNode": kind.gpus,
            "pricePerGpuHour": PRICES[kind.pool],
        }
        docs.append(
            {
                "apiVersion": "rightsizer.io/v1alpha1",
                "kind": "GPUNodePool",
                "metadata": {"name": kind.pool},
                "spec": spec,
            }
        )
    return docs
