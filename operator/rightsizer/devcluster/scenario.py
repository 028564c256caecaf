"""What the fake GPU fleet is doing: scenario rules, GPU assignment and per-GPU readings.

Everything here is pure (no API calls, no clock: `now` is a parameter) so the fake exporter's
behaviour is unit-tested without a cluster. The HTTP and Kubernetes side lives in fake_dcgm.py.

Scenario rules (a ConfigMap `fake-dcgm-scenario` labelled `rightsizer.io/fake-dcgm-scenario: "true"`
in the pods' namespace, key `scenario.yaml`; or a file given with --scenario, where each rule also
names its `namespace`):

    rules:
      - podPrefix: "web-"            # optional: pod name prefix
        selector: {app: web}         # optional: matchLabels
        util: 73                     # percent, constant; or
        series: [[0, 10], [120, 90]] # piecewise constant (seconds since start, util); holds the last value
        start: "2026-11-25T10:00:00Z"  # optional; default: when the exporter first saw the rule
        memoryUsedMiB: 20000         # optional, per GPU

Later rules win; the pod annotation `rightsizer.io/fake-gpu-util: "55"` beats every rule; a pod no
rule matches reports 0%.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rightsizer.core.errors import InvalidQuantity, RightsizerError
from rightsizer.core.quantity import parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
DRIVER_LABEL = "nvidia.com/cuda.driver-version.full"
UTIL_ANNOTATION = "rightsizer.io/fake-gpu-util"
SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"
SCENARIO_KEY = "scenario.yaml"
DEFAULT_DRIVER_VERSION = "550.127.05"

# Memory a CUDA context takes when a busy pod's rule names no memoryUsedMiB.
BUSY_BASELINE_MIB = 512
IDLE_SM_CLOCK_MHZ = 210
IDLE_TEMP_C = 30.0
TEMP_PER_UTIL_C = 0.45

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rightsizer.io/fake-dcgm-exporter")


class ScenarioError(RightsizerError, ValueError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(
            f"invalid fake DCGM scenario in {source}: {reason}. Expected 'rules:' with entries such as "
            "{podPrefix: web-, util: 73} or {selector: {app: web}, series: [[0, 10], [120, 90]]}"
        )
        self.source = source
        self.reason = reason


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    namespace: str | None = None
    pod_prefix: str | None = Field(default=None, alias="podPrefix")
    selector: dict[str, str] | None = None
    util: float | None = Field(default=None, ge=0, le=100)
    series: tuple[tuple[float, float], ...] | None = None
    start: datetime | None = None
    memory_used_mib: int | None = Field(default=None, ge=0, alias="memoryUsedMiB")

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("series")
    @classmethod
    def _series_ordered(
        cls, value: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("series needs at least one [seconds, util] point")
        previous = -math.inf
        for seconds, util in value:
            if seconds < 0 or seconds <= previous:
                raise ValueError("series seconds must be >= 0 and strictly increasing")
            if not 0 <= util <= 100:
                raise ValueError(f"series util {util} is outside 0..100")
            previous = seconds
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> Rule:
        if (self.util is None) == (self.series is None):
            raise ValueError("give exactly one of util or series")
        return self

    def matches(self, pod_name: str, pod_labels: Mapping[str, str]) -> bool:
        if self.pod_prefix is not None and not pod_name.startswith(self.pod_prefix):
            return False
        return all(pod_labels.get(k) == v for k, v in (self.selector or {}).items())

    def util_at(self, start: datetime, now: datetime) -> float:
        """Constant util, or the series point in force `now - start` seconds in (the first before it)."""
        if self.series is None:
            return float(self.util or 0.0)
        elapsed = (now - start).total_seconds()
        current = self.series[0][1]
        for seconds, util in self.series:
            if seconds > elapsed:
                break
            current = util
        return float(current)

    def identity(self) -> str:
        return self.model_dump_json(by_alias=True)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: tuple[Rule, ...] = ()


def load_scenario(text: str, source: str, namespace: str | None = None) -> Scenario:
    """Parse scenario YAML. With `namespace` (a ConfigMap's), rules may not name another namespace."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ScenarioError(source, f"not YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, "the document must be a mapping with a 'rules' list")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}" for err in exc.errors()
        )
        raise ScenarioError(source, problems) from exc
    for index, rule in enumerate(scenario.rules):
        if namespace is None and not rule.namespace:
            raise ScenarioError(source, f"rules.{index}: a rule in a scenario file needs 'namespace'")
        if namespace is not None and rule.namespace not in (None, namespace):
            raise ScenarioError(
                source,
                f"rules.{index}: namespace {rule.namespace!r} differs from the ConfigMap's {namespace!r}",
            )
    return scenario


@dataclass(frozen=True)
class ActiveRule:
    """A rule bound to its namespace and its resolved start time."""

    namespace: str
    rule: Rule
    start: datetime


# -- the cluster as the exporter sees it -------------------------------------------------------------


@dataclass(frozen=True)
class GpuNode:
    name: str
    gpu_count: int
    product: str
    memory_mib: int | None = None
    driver_version: str | None = None


@dataclass(frozen=True)
class GpuPod:
    uid: str
    namespace: str
    name: str
    node: str
    created: datetime
    containers: tuple[tuple[str, int], ...]  # (container name, GPUs it requests)
    labels: Mapping[str, str] = field(default_factory=dict)
    util_override: float | None = None

    @property
    def gpus(self) -> int:
        return sum(count for _, count in self.containers)


@dataclass(frozen=True)
class Holder:
    """Who uses one GPU."""

    uid: str
    namespace: str
    pod: str
    container: str


Assignment = Mapping[str, Mapping[int, Holder]]


def assign_gpus(
    nodes: Iterable[GpuNode], pods: Iterable[GpuPod], previous: Assignment
) -> dict[str, dict[int, Holder]]:
    """GPU indices per node. A pod keeps the GPUs it had while it lives; newcomers take the lowest free
    indices in (creation time, name) order; a pod that does not fit gets none (it is then unknown)."""
    by_node: dict[str, list[GpuPod]] = {}
    for pod in pods:
        if pod.gpus > 0:
            by_node.setdefault(pod.node, []).append(pod)
    result: dict[str, dict[int, Holder]] = {}
    for node in nodes:
        living = {pod.uid: pod for pod in by_node.get(node.name, [])}
        kept = {
            index: holder
            for index, holder in previous.get(node.name, {}).items()
            if holder.uid in living and index < node.gpu_count
        }
        held = {holder.uid for holder in kept.values()}
        slots = dict(kept)
        for pod in sorted(living.values(), key=lambda p: (p.created, p.name)):
            if pod.uid in held:
                continue
            free = [i for i in range(node.gpu_count) if i not in slots]
            if len(free) < pod.gpus:
                continue
            taken = iter(free)
            for container, count in pod.containers:
                for _ in range(count):
                    slots[next(taken)] = Holder(pod.uid, pod.namespace, pod.name, container)
        result[node.name] = dict(sorted(slots.items()))
    return result


# -- what each GPU reports ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class GpuReading:
    node: str
    index: int
    uuid: str
    pci_bus_id: str
    model_name: str
    driver_version: str
    util: float
    fb_used_mib: int
    fb_free_mib: int
    power_watts: float
    sm_clock_mhz: int
    temp_c: int
    holder: Holder | None


def pod_activity(pod: GpuPod, rules: Sequence[ActiveRule], now: datetime) -> tuple[float, int | None]:
    """(util %, memory MiB per GPU or None) for a pod: the last matching rule, then the annotation."""
    util, memory = 0.0, None
    for active in rules:
        if active.namespace == pod.namespace and active.rule.matches(pod.name, pod.labels):
            util, memory = active.rule.util_at(active.start, now), active.rule.memory_used_mib
    if pod.util_override is not None:
        util = pod.util_override
    return util, memory


def gpu_readings(
    nodes: Sequence[GpuNode],
    pods: Mapping[str, GpuPod],
    assignment: Assignment,
    rules: Sequence[ActiveRule],
    now: datetime,
    *,
    default_driver: str = DEFAULT_DRIVER_VERSION,
) -> list[GpuReading]:
    """Every GPU of every node, in node-name then index order."""
    readings: list[GpuReading] = []
    for node in sorted(nodes, key=lambda n: n.name):
        spec = spec_for(node.product)
        total = node.memory_mib or spec.memory_mib
        for index in range(node.gpu_count):
            holder = assignment.get(node.name, {}).get(index)
            pod = pods.get(holder.uid) if holder else None
            util, memory = pod_activity(pod, rules, now) if pod else (0.0, None)
            if memory is None:
                memory = BUSY_BASELINE_MIB if util > 0 else 0
            used = min(memory, total)
            readings.append(
                GpuReading(
                    node=node.name,
                    index=index,
                    uuid=gpu_uuid(node.name, index),
                    pci_bus_id=pci_bus_id(index),
                    model_name=model_name(node.product),
                    driver_version=node.driver_version or default_driver,
                    util=util,
                    fb_used_mib=used,
                    fb_free_mib=total - used,
                    power_watts=spec.idle_watts + (spec.max_watts - spec.idle_watts) * util / 100.0,
                    sm_clock_mhz=spec.max_sm_clock_mhz if util > 0 else IDLE_SM_CLOCK_MHZ,
                    temp_c=round(IDLE_TEMP_C + TEMP_PER_UTIL_C * util),
                    holder=holder if pod else None,
                )
            )
    return readings


# -- from API objects (plain JSON dicts) to the model ------------------------------------------------


def nodes_from_api(items: Iterable[Mapping[str, Any]]) -> list[GpuNode]:
    """Nodes with nvidia.com/gpu capacity; the others have nothing to export."""
    nodes: list[GpuNode] = []
    for item in items:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        capacity = (item.get("status") or {}).get("capacity") or {}
        count = _count(capacity.get(GPU_RESOURCE))
        if count <= 0:
            continue
        memory = labels.get(MEMORY_LABEL)
        nodes.append(
            GpuNode(
                name=meta["name"],
                gpu_count=count,
                product=labels.get(PRODUCT_LABEL, "NVIDIA-GPU"),
                memory_mib=int(memory) if memory and str(memory).isdigit() else None,
                driver_version=labels.get(DRIVER_LABEL) or _gfd_driver(labels),
            )
        )
    return nodes


def pods_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[list[GpuPod], list[str]]:
    """Running pods placed on a node that request GPUs, and warnings about ignored annotations."""
    pods: list[GpuPod] = []
    warnings: list[str] = []
    for item in items:
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        status = item.get("status") or {}
        if status.get("phase") != "Running" or not spec.get("nodeName"):
            continue
        containers = tuple(
            (c.get("name", ""), _container_gpus(c))
            for c in spec.get("containers") or []
            if _container_gpus(c) > 0
        )
        if not containers:
            continue
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        override: float | None = None
        raw = (meta.get("annotations") or {}).get(UTIL_ANNOTATION)
        if raw is not None:
            override = _percent(raw)
            if override is None:
                warnings.append(
                    f"{namespace}/{name}: ignoring {UTIL_ANNOTATION}={raw!r} (want a number 0..100)"
                )
        pods.append(
            GpuPod(
                uid=meta.get("uid") or f"{namespace}/{name}",
                namespace=namespace,
                name=name,
                node=spec["nodeName"],
                created=_timestamp(meta.get("creationTimestamp")),
                containers=containers,
                labels=dict(meta.get("labels") or {}),
                util_override=override,
            )
        )
    return pods, warnings


def _container_gpus(container: Mapping[str, Any]) -> int:
    resources = container.get("resources") or {}
    # Extended resources must have requests == limits; either may be written alone.
    for kind in ("limits", "requests"):
        value = (resources.get(kind) or {}).get(GPU_RESOURCE)
        if value is not None:
            return _count(value)
    return 0


def _count(value: object) -> int:
    if value is None:
        return 0
    try:
        return int(parse_quantity(str(value)))
    except InvalidQuantity:
        return 0


def _percent(raw: object) -> float | None:
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def _timestamp(raw: object) -> datetime:
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def _gfd_driver(labels: Mapping[str, str]) -> str | None:
    parts = [labels.get(f"nvidia.com/cuda.driver.{p}") for p in ("major", "minor", "rev")]
    return ".".join(p for p in parts if p) if all(parts) else None
