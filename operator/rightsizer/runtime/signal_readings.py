"""Reads a GPUWorkload's request signals (spec.metrics of type Pods, Object, External) from Prometheus.

Apart from the reconciler because each signal fails on its own: one broken query must leave the
others (and GPU utilisation) usable, and say what broke, while the core decides what a signal that
could not be read may still allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from rightsizer.adapters.metrics.base import GpuMetricsSource
from rightsizer.api.v1alpha1 import MetricType, ScalingMetric
from rightsizer.core.errors import InvalidMetricQuery, MetricsUnavailable
from rightsizer.core.scaling_signals import SignalReading


def read_signals(
    source: GpuMetricsSource | None,
    metrics: Sequence[ScalingMetric],
    *,
    namespace: str,
    pods: Sequence[str],
    now: datetime,
    max_age: timedelta,
) -> dict[str, SignalReading]:
    """One reading per request signal, keyed by its name; a failure is a reading with a problem."""
    readings: dict[str, SignalReading] = {}
    for metric in metrics:
        if metric.type is MetricType.GPU or metric.name is None or metric.query is None:
            continue
        if source is None:
            readings[metric.name] = SignalReading(metric.name, problem="no Prometheus source is configured")
            continue
        try:
            readings[metric.name] = _read(
                source, metric, metric.name, metric.query, namespace, pods, now, max_age
            )
        except (MetricsUnavailable, InvalidMetricQuery) as exc:
            readings[metric.name] = SignalReading(metric.name, problem=str(exc))
    return readings


def _read(  # noqa: PLR0917 - one signal and where to read it
    source: GpuMetricsSource,
    metric: ScalingMetric,
    name: str,
    query: str,
    namespace: str,
    pods: Sequence[str],
    now: datetime,
    max_age: timedelta,
) -> SignalReading:
    if metric.type is MetricType.PODS:
        if not pods:
            return SignalReading(name, problem="no Ready pod to read")
        samples = source.custom_pod_samples(query, namespace, pods)
        # A stale pod value is no value: the core fills it in against the change, as HPA does.
        fresh = {
            pod: sample.value
            for pod, sample in samples.items()
            if math.isnan(sample.value) or sample.age_seconds(now) <= max_age.total_seconds()
        }
        return SignalReading(name, per_pod=fresh)
    value = source.scalar(query, namespace, pods)
    return SignalReading(name, value=value)
