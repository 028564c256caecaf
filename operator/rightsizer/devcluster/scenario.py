"""What the fake GPU fleet is doing: scenario rules and what each GPU (or MIG instance) reads.

Everything here is pure (no API calls, no clock: `now` is a parameter) so the fake exporter's
behaviour is unit-tested without a cluster. The rules' model is in scenario_rules.py, devices and
who holds them in gpu_devices.py, the API objects they come from in api_objects.py, the HTTP and
Kubernetes side in fake_dcgm.py.

Scenario rules (a ConfigMap `fake-dcgm-scenario` labelled `rightsizer.io/fake-dcgm-scenario: "true"`
in the pods' namespace, key `scenario.yaml`; or a file given with --scenario, where each rule also
names its `namespace`):

    rules:
      - podPrefix: "web-"            # optional: pod name prefix
        selector: {app: web}         # optional: matchLabels
        util: 73                     # percent, constant; or
        series: [[0, 10], [120, 90]] # piecewise constant (seconds since start, util); holds the last value
        gpuUtil: [30, 0, 0, 0]       # or percent per GPU: the pod's GPU i reads element i, missing ones 0
        start: "2026-11-25T10:00:00Z"  # optional; default: when the exporter first saw the rule
        memoryUsedMiB: 20000         # optional, per GPU; only beside util, series or gpuUtil
        appMetrics:                  # optional: gauges the pod's own server (vLLM, Triton) exports
          "vllm:num_requests_waiting": 12   # Prometheus metric name: finite value >= 0
          "vllm:gpu_cache_usage_perc": 0.4

A rule gives one of util, series or gpuUtil, or appMetrics, or both. Later rules win, each concern
on its own: a pod's utilisation (with memoryUsedMiB) comes from the last matching rule that gives
util, series or gpuUtil, and each app gauge from the last matching rule that names it; so a rule
with only appMetrics leaves the utilisation an earlier rule set, and a rule with only util leaves
the app gauges. The pod annotation `rightsizer.io/fake-gpu-util: "55"` beats every rule (on every
GPU of the pod; app gauges are kept); a pod no rule matches reports 0%. A pod annotated
`rightsizer.io/fake-dcgm-unmapped: "true"` has no series: its GPUs are written without pod labels,
idle, as dcgm-exporter writes GPUs it cannot map to a pod. A pod's GPU i is its i-th whole GPU (or
time-sliced replica) in index order; its MIG instances are counted the same way, on their own.

What the devices report: a whole GPU its holder's utilisation (DCGM_FI_DEV_GPU_UTIL, and
DCGM_FI_PROF_GR_ENGINE_ACTIVE as a ratio). A time-sliced GPU one device-level value, min(100, sum of
its sharers' utilisations), and memory the sum of theirs. A MIG instance its holder's activity as
GR_ENGINE_ACTIVE only (DCGM has no GPU_UTIL for MIG) and its slice's memory; power, clock and
temperature are the parent GPU's, driven by its instances' activity weighted by their compute share.

App gauges are one series per pod (not per GPU), labelled with its namespace and pod only, as the
pod's own /metrics would read once Prometheus has attached them; an unmapped pod keeps them, since
they do not pass through DCGM's pod mapping. Names the exporter writes itself (DCGM_*, dcgm_*) are
refused.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from rightsizer.devcluster.gpu_devices import (
    Assignment,
    GpuNode,
    GpuPod,
    GpuSpec,
    Holder,
    MigAssignment,
    MigInstance,
    gpu_memory_mib,
    gpu_uuid,
    mig_layout,
    model_name,
    pci_bus_id,
    spec_for,
)
from rightsizer.devcluster.scenario_rules import (
    ActiveRule,
    pod_activity,
    pod_app_metrics,
)

DEFAULT_DRIVER_VERSION = "550.127.05"

# Memory a CUDA context takes when a busy pod's rule names no memoryUsedMiB.
BUSY_BASELINE_MIB = 512
IDLE_SM_CLOCK_MHZ = 210
IDLE_TEMP_C = 30.0
TEMP_PER_UTIL_C = 0.45


# -- what each device reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class GpuReading:
    """One series' worth of a device, as the exporter labels it."""

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
    mig_profile: str | None = None
    """GPU_I_PROFILE of a MIG instance; its parent's index, UUID and device are the GPU's own."""
    gpu_instance_id: int | None = None
    vgpu: int | None = None
    """The replica of a time-sliced GPU the holder has (--kubernetes-virtual-gpus)."""


def gpu_readings(
    nodes: Sequence[GpuNode],
    pods: Mapping[str, GpuPod],
    assignment: Assignment,
    rules: Sequence[ActiveRule],
    now: datetime,
    *,
    default_driver: str = DEFAULT_DRIVER_VERSION,
    mig: MigAssignment | None = None,
    virtual_gpus: bool = True,
) -> list[GpuReading]:
    """Every series the exporter writes, in node-name then GPU index order: each whole GPU, each MIG
    instance of a MIG-enabled one. A time-sliced GPU with `virtual_gpus` (dcgm-exporter's
    --kubernetes-virtual-gpus) writes one series per sharing replica, each with the device's value;
    without it one series, labelled with the sharer of its lowest replica only."""
    readings: list[GpuReading] = []
    activity = _Activity(pods, rules, now)
    for node in sorted(nodes, key=lambda n: n.name):
        readings += _gpu_series(node, assignment.get(node.name, {}), activity, default_driver, virtual_gpus)
        if node.mig:
            held = (mig or {}).get(node.name, {})
            readings += _mig_series(node, held, activity, default_driver)
    return readings


@dataclass(frozen=True)
class AppReading:
    """One application gauge of one pod."""

    metric: str
    namespace: str
    pod: str
    value: float


def app_readings(
    pods: Mapping[str, GpuPod], rules: Sequence[ActiveRule], node: str | None = None
) -> list[AppReading]:
    """The app gauges of the GPU pods (on `node`, if given), by metric name, namespace, pod."""
    readings = [
        AppReading(metric, pod.namespace, pod.name, value)
        for pod in pods.values()
        if node is None or pod.node == node
        for metric, value in pod_app_metrics(pod, rules).items()
    ]
    return sorted(readings, key=lambda r: (r.metric, r.namespace, r.pod))


_Slot = TypeVar("_Slot")


@dataclass(frozen=True)
class _Activity:
    pods: Mapping[str, GpuPod]
    rules: Sequence[ActiveRule]
    now: datetime

    def of(
        self, held: Mapping[_Slot, Holder], order: Iterable[_Slot]
    ) -> dict[_Slot, tuple[Holder, float, int]]:
        """(holder, util %, memory MiB) per held device of a living pod; a pod's devices are its
        GPU 0, 1, ... in `order`."""
        seen: Counter[str] = Counter()
        out: dict[_Slot, tuple[Holder, float, int]] = {}
        for slot in order:
            holder = held.get(slot)
            pod = self.pods.get(holder.uid) if holder else None
            if holder is None or pod is None or pod.unmapped:
                continue
            util, memory = pod_activity(pod, self.rules, self.now, seen[holder.uid])
            seen[holder.uid] += 1
            if memory is None:
                memory = BUSY_BASELINE_MIB if util > 0 else 0
            out[slot] = (holder, util, memory)
        return out


def _gpu_series(
    node: GpuNode, held: Mapping[int, Holder], activity: _Activity, driver: str, virtual_gpus: bool
) -> list[GpuReading]:
    spec = spec_for(node.product)
    total = gpu_memory_mib(node)
    active = activity.of(held, range(node.slots))
    out: list[GpuReading] = []
    for index in range(node.gpu_count):
        first = index * node.replicas
        sharers = [(s - first, active[s]) for s in range(first, first + node.replicas) if s in active]
        util = min(100.0, math.fsum(u for _, (_, u, _) in sharers))
        used = min(sum(m for _, (_, _, m) in sharers), total)
        power, clock, temp = _device_level(spec, util)
        reading = GpuReading(
            node=node.name,
            index=index,
            uuid=gpu_uuid(node.name, index),
            pci_bus_id=pci_bus_id(index),
            model_name=model_name(node.product),
            driver_version=node.driver_version or driver,
            util=util,
            fb_used_mib=used,
            fb_free_mib=total - used,
            power_watts=power,
            sm_clock_mhz=clock,
            temp_c=temp,
            holder=None,
        )
        if not sharers:
            out.append(reading)
        elif node.time_sliced and virtual_gpus:
            out += [replace(reading, holder=holder, vgpu=replica) for replica, (holder, _, _) in sharers]
        else:
            # Without virtual GPUs the exporter maps a device to one pod: the others go unlabelled.
            out.append(replace(reading, holder=sharers[0][1][0]))
    return out


def _mig_series(
    node: GpuNode, held: Mapping[MigInstance, Holder], activity: _Activity, driver: str
) -> list[GpuReading]:
    spec = spec_for(node.product)
    layout = mig_layout(node)
    active = activity.of(held, layout)
    # Device-level fields of an instance are its parent's: the whole GPU's load.
    load: dict[int, float] = {}
    for instance in layout:
        util = active[instance][1] if instance in active else 0.0
        load[instance.gpu] = load.get(instance.gpu, 0.0) + util * float(instance.compute)
    out: list[GpuReading] = []
    for instance in layout:
        holder, util, memory = active.get(instance, (None, 0.0, 0))
        used = min(memory, instance.memory_mib)
        power, clock, temp = _device_level(spec, min(100.0, load[instance.gpu]))
        out.append(
            GpuReading(
                node=node.name,
                index=instance.gpu,
                uuid=gpu_uuid(node.name, instance.gpu),
                pci_bus_id=pci_bus_id(instance.gpu),
                model_name=model_name(node.product),
                driver_version=node.driver_version or driver,
                util=util,
                fb_used_mib=used,
                fb_free_mib=instance.memory_mib - used,
                power_watts=power,
                sm_clock_mhz=clock,
                temp_c=temp,
                holder=holder,
                mig_profile=instance.profile,
                gpu_instance_id=instance.instance_id,
            )
        )
    return out


def _device_level(spec: GpuSpec, util: float) -> tuple[float, int, int]:
    """(power W, SM clock MHz, temperature °C) of a GPU this busy."""
    power = spec.idle_watts + (spec.max_watts - spec.idle_watts) * util / 100.0
    clock = spec.max_sm_clock_mhz if util > 0 else IDLE_SM_CLOCK_MHZ
    return power, clock, round(IDLE_TEMP_C + TEMP_PER_UTIL_C * util)
