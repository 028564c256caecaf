"""Reading a workload's GPU samples the way the reconciler does."""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.adapters.metrics.base import GPU_UTIL, GpuMetricsSource, Over, PodSamples


def workload_samples(
    source: GpuMetricsSource,
    namespace: str,
    pods: Iterable[str],
    *,
    signal: str = GPU_UTIL,
    window_seconds: int = 0,
    over: Over = "avg",
) -> PodSamples:
    """The pass's fleet samples kept to one workload's pods, by name: a pod without series is absent
    (unknown), and a namesake in another namespace is not this workload's."""
    fleet = source.fleet_samples(signal, window_seconds, over)
    return {pod: fleet[(namespace, pod)] for pod in pods if (namespace, pod) in fleet}
