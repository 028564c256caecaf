"""The fake fleet's devices and who holds them: whole GPUs, time-sliced replicas, MIG instances.

Pure (no API calls, no clock): an assignment is computed from the previous one and the pods living
now, so a pod keeps its devices while it lives and newcomers take the lowest free ones in
(creation time, name) order. A pod whose request does not fit gets nothing (it is then unknown,
never given a share it did not ask for).

- Whole GPUs: the node's ``nvidia.com/gpu`` capacity, indices 0..G-1.
- Time-slicing (device plugin ``sharing.timeSlicing``; GPU feature discovery labels the node
  ``nvidia.com/gpu.replicas: N``): the node advertises G physical GPUs × N replicas, as
  ``nvidia.com/gpu`` or, with ``renameByDefault``, ``nvidia.com/gpu.shared``. Replica slot ``s`` is
  replica ``s % N`` of physical GPU ``s // N``, so taking the lowest free slot fills one GPU's N
  slots before the next. Any node labelled N > 1 is modelled so (MPS sharing too).
- MIG, mixed strategy (``nvidia.com/mig-<profile>`` capacity): MIG-enabled GPUs follow the whole
  ones (indices G, G+1, ...). Instances are packed largest profile first, each onto the first
  parent with room for its compute and memory slices (fractions from the GPU catalog; for a GPU or
  profile it does not know, read from the name ``<c>g.<m>gb`` as c/7 compute and m GiB). A parent's
  instances are numbered ``GPU_I_ID`` 1, 2, ... in packing order. MIG instances are not time-sliced.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import TypeVar

from rightsizer.core.gpu_catalog import GpuModel, MigProfile, find_gpu_model

WHOLE_GPU = "gpu"
"""The kind of a whole-GPU or time-sliced slot (MIG slots are of their profile's kind)."""

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rightsizer.io/fake-dcgm-exporter")


@dataclass(frozen=True)
class GpuNode:
    name: str
    gpu_count: int
    """Physical GPUs not partitioned by MIG (a time-sliced GPU counts once)."""
    product: str
    memory_mib: int | None = None
    driver_version: str | None = None
    replicas: int = 1
    """Time-slicing replicas per GPU (``nvidia.com/gpu.replicas``); 1 when GPUs are not shared."""
    mig: tuple[tuple[str, int], ...] = ()
    """MIG instances the node advertises: (profile, count)."""

    @property
    def slots(self) -> int:
        """What the device plugin advertises for whole GPUs: physical GPUs × replicas."""
        return self.gpu_count * self.replicas

    @property
    def time_sliced(self) -> bool:
        return self.replicas > 1


@dataclass(frozen=True)
class GpuPod:
    uid: str
    namespace: str
    name: str
    node: str
    created: datetime
    containers: tuple[tuple[str, int], ...]  # (container name, GPUs or GPU replicas it requests)
    labels: Mapping[str, str] = field(default_factory=dict)
    util_override: float | None = None
    mig: tuple[tuple[str, str, int], ...] = ()  # (container name, MIG profile, instances)
    unmapped: bool = False  # the exporter cannot tell this pod holds its GPUs: no pod labels

    @property
    def gpus(self) -> int:
        return sum(count for _, count in self.containers)


@dataclass(frozen=True)
class Holder:
    """Who uses one GPU, replica or MIG instance."""

    uid: str
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, order=True)
class MigInstance:
    gpu: int
    """Index of the parent GPU."""
    instance_id: int
    """GPU_I_ID: the instance's number on its parent."""
    profile: str
    memory_mib: int
    compute: Fraction
    """Share of the parent's compute."""


Assignment = Mapping[str, Mapping[int, Holder]]
"""Per node, whole-GPU index (or replica slot on a time-sliced node) → holder."""
MigAssignment = Mapping[str, Mapping[MigInstance, Holder]]


# -- models: power, clocks, memory, names ----------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    idle_watts: float
    max_watts: float
    max_sm_clock_mhz: int
    memory_mib: int


DEFAULT_SPEC = GpuSpec(idle_watts=50, max_watts=300, max_sm_clock_mhz=1500, memory_mib=16384)
_SPECS: tuple[tuple[str, GpuSpec], ...] = (
    ("A100", GpuSpec(60, 400, 1410, 81920)),
    ("H100", GpuSpec(70, 700, 1980, 81559)),
    ("L4", GpuSpec(16, 72, 2040, 23034)),
    ("T4", GpuSpec(10, 70, 1590, 15360)),
)
# GPU feature discovery writes the driver's product name with spaces turned into dashes; dcgm-exporter
# shows the name itself. Only some dashes were spaces, so known products are spelled out.
_MODEL_NAMES = {
    "NVIDIA-A100-SXM4-80GB": "NVIDIA A100-SXM4-80GB",
    "NVIDIA-A100-SXM4-40GB": "NVIDIA A100-SXM4-40GB",
    "NVIDIA-A100-PCIE-40GB": "NVIDIA A100-PCIE-40GB",
    "NVIDIA-A100-80GB-PCIe": "NVIDIA A100 80GB PCIe",
    "NVIDIA-H100-80GB-HBM3": "NVIDIA H100 80GB HBM3",
    "NVIDIA-H100-PCIe": "NVIDIA H100 PCIe",
    "NVIDIA-L4": "NVIDIA L4",
    "NVIDIA-L40S": "NVIDIA L40S",
    "Tesla-T4": "Tesla T4",
}


def spec_for(product: str) -> GpuSpec:
    tokens = set(re.split(r"[-_\s]+", product.upper()))
    for key, spec in _SPECS:
        if key in tokens:
            return spec
    return DEFAULT_SPEC


def model_name(product: str) -> str:
    """`NVIDIA-A100-SXM4-80GB` (node label) → `NVIDIA A100-SXM4-80GB` (what the exporter shows)."""
    if product in _MODEL_NAMES:
        return _MODEL_NAMES[product]
    return re.sub(r"^(NVIDIA|Tesla)-", r"\1 ", product)


def gpu_uuid(node: str, index: int) -> str:
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{node}/{index}')}"


def pci_bus_id(index: int) -> str:
    slot = 7 + 8 * index
    return f"{slot // 256:08X}:{slot % 256:02X}:00.0"


def gpu_memory_mib(node: GpuNode) -> int:
    """The node label, else the model's own memory."""
    return node.memory_mib or spec_for(node.product).memory_mib


# -- MIG layout ------------------------------------------------------------------------------------


_PROFILE_NAME = re.compile(r"(\d+)g\.(\d+)gb")


def mig_layout(node: GpuNode) -> tuple[MigInstance, ...]:
    """The node's MIG instances on their parent GPUs (rules in the module docstring)."""
    model = find_gpu_model(node.product)
    total = gpu_memory_mib(node)
    pieces = sorted(
        (_profile(model, name, total) for name, count in node.mig for _ in range(count)),
        key=lambda p: (-p.memory_fraction, -p.compute_fraction, p.name),
    )
    parents: list[list[MigProfile]] = []
    for piece in pieces:
        home = next((p for p in parents if _has_room(p, piece)), None)
        if home is None:
            home = []
            parents.append(home)
        home.append(piece)
    return tuple(
        MigInstance(
            node.gpu_count + g, n + 1, piece.name, int(total * piece.memory_fraction), piece.compute_fraction
        )
        for g, on_parent in enumerate(parents)
        for n, piece in enumerate(on_parent)
    )


def _profile(model: GpuModel | None, name: str, total_mib: int) -> MigProfile:
    base = name.split("+", maxsplit=1)[0]  # "1g.10gb+me" is 1g.10gb with the media engines
    for known in model.mig_profiles if model else ():
        if known.name == base:
            return MigProfile(name, known.compute_fraction, known.memory_fraction)
    parsed = _PROFILE_NAME.search(base)
    if parsed is None:  # a naming we cannot read: the smallest slice
        return MigProfile(name, Fraction(1, 7), Fraction(1, 8))
    compute = min(Fraction(int(parsed.group(1)), 7), Fraction(1))
    memory = min(Fraction(int(parsed.group(2)) * 1024, total_mib), Fraction(1))
    return MigProfile(name, compute, memory)


def _has_room(placed: Sequence[MigProfile], piece: MigProfile) -> bool:
    compute = sum((p.compute_fraction for p in placed), piece.compute_fraction)
    memory = sum((p.memory_fraction for p in placed), piece.memory_fraction)
    return compute <= 1 and memory <= 1


# -- assignment ------------------------------------------------------------------------------------


def assign_gpus(
    nodes: Iterable[GpuNode], pods: Iterable[GpuPod], previous: Assignment
) -> dict[str, dict[int, Holder]]:
    """Whole-GPU indices (replica slots on a time-sliced node) per node: see the module docstring."""
    by_node = _by_node(pods)
    return {
        node.name: _fill(
            [(slot, WHOLE_GPU) for slot in range(node.slots)],
            by_node.get(node.name, []),
            lambda pod: [(container, WHOLE_GPU, count) for container, count in pod.containers],
            previous.get(node.name, {}),
        )
        for node in nodes
    }


def assign_mig(
    nodes: Iterable[GpuNode], pods: Iterable[GpuPod], previous: MigAssignment
) -> dict[str, dict[MigInstance, Holder]]:
    """MIG instances per node with MIG capacity; a pod takes the first free ones of its profiles."""
    by_node = _by_node(pods)
    return {
        node.name: _fill(
            [(instance, instance.profile) for instance in mig_layout(node)],
            by_node.get(node.name, []),
            lambda pod: pod.mig,
            previous.get(node.name, {}),
        )
        for node in nodes
        if node.mig
    }


def _by_node(pods: Iterable[GpuPod]) -> dict[str, list[GpuPod]]:
    by_node: dict[str, list[GpuPod]] = {}
    for pod in pods:
        by_node.setdefault(pod.node, []).append(pod)
    return by_node


_Slot = TypeVar("_Slot")


def _fill(
    slots: Sequence[tuple[_Slot, str]],
    pods: Sequence[GpuPod],
    wants: Callable[[GpuPod], Sequence[tuple[str, str, int]]],
    previous: Mapping[_Slot, Holder],
) -> dict[_Slot, Holder]:
    """`slots` (slot, kind) in preference order; `wants` a pod's (container, kind, count) requests.
    All of a pod's requests are met or none are."""
    living = {pod.uid: pod for pod in pods}
    existing = {slot for slot, _ in slots}
    taken = {s: h for s, h in previous.items() if h.uid in living and s in existing}
    held = {holder.uid for holder in taken.values()}
    for pod in sorted(living.values(), key=lambda p: (p.created, p.name)):
        demands = [d for d in wants(pod) if d[2] > 0]
        if pod.uid in held or not demands:
            continue
        picks: dict[_Slot, Holder] = {}
        for container, kind, count in demands:
            free = [s for s, k in slots if k == kind and s not in taken and s not in picks][:count]
            if len(free) < count:
                break
            picks.update((s, Holder(pod.uid, pod.namespace, pod.name, container)) for s in free)
        else:
            taken.update(picks)
    return {slot: taken[slot] for slot, _ in slots if slot in taken}
