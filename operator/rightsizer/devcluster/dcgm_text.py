"""The text dcgm-exporter writes, for the fake exporter: HELP/TYPE lines, label names and order,
value formatting, in each release's flavour, and the ways broken exporters break it.

Flavours: ``new`` (2.x+: namespace/pod/container), ``old`` (``--use-old-namespace``:
pod_namespace/pod_name/container_name) and ``1.x`` (old labels, lower-case ``uuid`` and the names of
``etc/1.x-compatibility-metrics.csv``, e.g. ``dcgm_gpu_utilization``). A MIG instance carries its
parent's ``gpu``/``UUID``/``device`` plus ``GPU_I_PROFILE``/``GPU_I_ID`` and no GPU_UTIL; a replica
of a time-sliced GPU, under ``--kubernetes-virtual-gpus``, a ``vgpu`` label beside its pod's.

After the DCGM series come the pods' app gauges (scenario rules' ``appMetrics``), one series per
pod labelled with the flavour's namespace and pod label names, so one query shape serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rightsizer.adapters.metrics.exposition import escape_help, escape_label_value
from rightsizer.devcluster.scenario import AppReading, GpuReading

FAULTS = ("garbled", "explode", "blanks")
# What DCGM writes for a field the GPU or driver does not support: DCGM_INT64_NOT_SUPPORTED for
# integer fields, DCGM_FP64_BLANK (2^47) for doubles.
INT64_NOT_SUPPORTED = "9223372036854775794"
FP64_BLANK = "140737488355328.000000"
BLANK_FIELDS = {"DCGM_FI_DEV_FB_USED": INT64_NOT_SUPPORTED, "DCGM_FI_DEV_POWER_USAGE": FP64_BLANK}
APP_HELP = "Application gauge of the pod's own server, set by a fake DCGM scenario rule's appMetrics."


@dataclass(frozen=True)
class LabelNames:
    """Label names that differ between dcgm-exporter releases."""

    hostname: str
    namespace: str
    pod: str
    container: str
    uuid: str = "UUID"
    metric_names: Mapping[str, str] = field(default_factory=dict)
    """1.x-compatible names by field; fields not listed keep their DCGM name."""

    def metric(self, name: str) -> str:
        return self.metric_names.get(name, name)


LABEL_FLAVOURS = {
    # namespace/pod/container since 2.x; "Hostname" until a 2026 release renamed it "hostname".
    "new": LabelNames("Hostname", "namespace", "pod", "container"),
    # --use-old-namespace (and 1.x releases).
    "old": LabelNames("Hostname", "pod_namespace", "pod_name", "container_name"),
    "1.x": LabelNames(
        "Hostname",
        "pod_namespace",
        "pod_name",
        "container_name",
        uuid="uuid",
        metric_names={
            "DCGM_FI_DEV_SM_CLOCK": "dcgm_sm_clock",
            "DCGM_FI_DEV_GPU_TEMP": "dcgm_gpu_temp",
            "DCGM_FI_DEV_POWER_USAGE": "dcgm_power_usage",
            "DCGM_FI_DEV_GPU_UTIL": "dcgm_gpu_utilization",
            "DCGM_FI_DEV_FB_FREE": "dcgm_fb_free",
            "DCGM_FI_DEV_FB_USED": "dcgm_fb_used",
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "dcgm_fi_prof_gr_engine_active",
        },
    ),
}


@dataclass(frozen=True)
class Field:
    name: str
    help: str
    value: Callable[[GpuReading], float]
    is_double: bool = False
    on_mig: bool = True
    """DCGM reports the field for a MIG instance."""


# Help texts and order as in dcgm-exporter's etc/default-counters.csv.
FIELDS: tuple[Field, ...] = (
    Field("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda r: r.sm_clock_mhz),
    Field("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda r: r.temp_c),
    Field("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda r: r.power_watts, is_double=True),
    # Not for MIG instances: NVIDIA has no plans to report it there (GR_ENGINE_ACTIVE is the signal).
    Field("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda r: r.util, on_mig=False),
    Field("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", lambda r: r.fb_free_mib),
    Field("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda r: r.fb_used_mib),
    Field(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "Ratio of time the graphics engine is active.",
        lambda r: r.util / 100.0,
        is_double=True,
    ),
)


def format_value(value: float, is_double: bool) -> str:
    # dcgm-exporter prints int64 fields as integers and double fields with Go's %f.
    return f"{value:f}" if is_double else str(round(value))


def series_labels(reading: GpuReading, names: LabelNames) -> list[tuple[str, str]]:
    labels = [
        ("gpu", str(reading.index)),
        (names.uuid, reading.uuid),
        ("pci_bus_id", reading.pci_bus_id),
        ("device", f"nvidia{reading.index}"),
        ("modelName", reading.model_name),
    ]
    if reading.mig_profile is not None:
        labels += [("GPU_I_PROFILE", reading.mig_profile), ("GPU_I_ID", str(reading.gpu_instance_id))]
    labels += [(names.hostname, reading.node), ("DCGM_FI_DRIVER_VERSION", reading.driver_version)]
    if reading.holder is not None:
        attributes = [
            (names.container, reading.holder.container),
            (names.namespace, reading.holder.namespace),
            (names.pod, reading.holder.pod),
        ]
        if reading.vgpu is not None:
            attributes.append(("vgpu", str(reading.vgpu)))
        # The exporter adds pod attributes from a Go map, which its template prints in key order.
        labels += sorted(attributes)
    return labels


def render(readings: Sequence[GpuReading], names: LabelNames) -> str:
    """The /metrics body for these GPUs."""
    lines: list[str] = []
    for metric in FIELDS:
        reported = [r for r in readings if metric.on_mig or r.mig_profile is None]
        if readings and not reported:
            continue  # e.g. GPU_UTIL on a node whose GPUs are all MIG instances
        name = names.metric(metric.name)
        lines.append(f"# HELP {name} {escape_help(metric.help)}")
        lines.append(f"# TYPE {name} gauge")
        for reading in reported:
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in series_labels(reading, names))
            lines.append(f"{name}{{{labels}}} {format_value(metric.value(reading), metric.is_double)}")
    return "\n".join(lines) + "\n"


def render_app_metrics(readings: Sequence[AppReading], names: LabelNames) -> str:
    """The pods' app gauges, `readings` grouped by metric as app_readings orders them: each family's
    HELP/TYPE once ("" for none)."""
    lines: list[str] = []
    for index, reading in enumerate(readings):
        if index == 0 or readings[index - 1].metric != reading.metric:
            lines.append(f"# HELP {reading.metric} {escape_help(APP_HELP)}")
            lines.append(f"# TYPE {reading.metric} gauge")
        # Sorted like the DCGM series' pod attributes (pod_name before pod_namespace in old flavours).
        labels = sorted([(names.namespace, reading.namespace), (names.pod, reading.pod)])
        text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
        lines.append(f"{reading.metric}{{{text}}} {format_app_value(reading.value)}")
    return "".join(f"{line}\n" for line in lines)


def format_app_value(value: float) -> str:
    # As Prometheus client libraries print a gauge: whole numbers without a fraction, others exactly.
    return str(int(value)) if value.is_integer() and value < 2**53 else repr(value)


def with_fault(body: str, fault: str, readings: Sequence[GpuReading], names: LabelNames, series: int) -> str:
    """``body`` broken the way ``fault`` says (one of FAULTS)."""
    first = (
        ",".join(f'{k}="{escape_label_value(v)}"' for k, v in series_labels(readings[0], names))
        if readings
        else 'gpu="0"'
    )
    if fault == "garbled":
        # A field the exporter could not read, printed as text where a number belongs.
        return f"{body}{names.metric('DCGM_FI_DEV_GPU_UTIL')}{{{first}}} N/A\n"
    if fault == "blanks":
        # Memory and power unsupported on every GPU, as on GPUs whose driver cannot read them.
        blanks = {names.metric(field): value for field, value in BLANK_FIELDS.items()}
        lines = []
        for line in body.splitlines():
            name = line.split("{", 1)[0]
            lines.append(f"{line.rsplit(' ', 1)[0]} {blanks[name]}" if name in blanks else line)
        return "\n".join(lines) + "\n"
    if fault == "explode":
        util = names.metric("DCGM_FI_DEV_GPU_UTIL")
        extra = "".join(f'{util}{{{first},err_id="{i}"}} 0\n' for i in range(series))
        return body + extra
    raise ValueError(f"unknown fault {fault!r}: expected one of {', '.join(FAULTS)}")
