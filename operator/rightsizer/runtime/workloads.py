"""One pass over one GPUWorkload, in four steps:

- observe (``workload_observe``): the target, its pods, their metrics and signals, conflicts, nodes
  and pools, read through the adapters into one frozen observation;
- decide (``workload_decide``): pure, from the observation and the settings; the replica decision is
  ``replica_step``'s, the one ``rightsizer backtest`` replays;
- act (``workload_act``): scale, suspend or annotate the target (Enforce only), and say what happened;
- describe (``workload_describe``): status, cost, cost annotations, events and the operator's metrics.

The steps keep nothing between passes; what is kept (recent samples, the scaling state last written,
the fleet's metrics) is this reconciler's, lent to the step that reads or writes it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from rightsizer.adapters.cluster_view import ClusterView
from rightsizer.adapters.kube import TargetApi
from rightsizer.adapters.metrics.base import GpuMetricsSource
from rightsizer.core.status import Problem
from rightsizer.runtime.decision_record import Recorder, pass_record
from rightsizer.runtime.io_time import IoTime
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry
from rightsizer.runtime.workload_act import act
from rightsizer.runtime.workload_decide import decide
from rightsizer.runtime.workload_describe import WorkloadResult, describe, describe_problem
from rightsizer.runtime.workload_memory import FleetCache, SampleBuffer, ScalingStateMemory
from rightsizer.runtime.workload_observe import WorkloadObserver, read_header


class WorkloadReconciler:
    """Holds the adapters; `reconcile` is called once per GPUWorkload per interval."""

    def __init__(
        self,
        kube: TargetApi,
        sources: Mapping[str, GpuMetricsSource],
        settings: Settings,
        telemetry: Telemetry,
        recorder: Recorder | None = None,
    ) -> None:
        # Adapter calls are timed, so each reconciliation's own CPU work is measured apart from its I/O.
        self._io = IoTime()
        self._kube = self._io.timed(kube)
        timed_sources = {name: self._io.timed(source) for name, source in sources.items()}
        self._observer = WorkloadObserver(self._kube, timed_sources, settings, telemetry)
        self._settings = settings
        self._telemetry = telemetry
        self._recorder = recorder
        self._buffer = SampleBuffer(horizon=timedelta(hours=1))
        self._scaling = ScalingStateMemory()
        # One fetch per interval: kopf runs each workload's timer on its own phase, so the workloads of
        # one pass are spread over the whole interval and share what the first of them fetched.
        self._fleet = FleetCache(ttl=timedelta(seconds=max(1.0, settings.interval_seconds)))

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def forget(self, namespace: str, name: str) -> None:
        self._buffer.forget((namespace, name))
        self._scaling.forget((namespace, name))
        self._telemetry.forget_workload(namespace, name)

    def reconcile(self, body: Mapping[str, Any], now: datetime, view: ClusterView) -> WorkloadResult:
        """One pass over one GPUWorkload, timed: wall clock, and the CPU of our own code."""
        wall, cpu, io = time.perf_counter(), time.thread_time(), self._io.spent()
        try:
            return self._reconcile(body, now, view)
        finally:
            elapsed = time.perf_counter() - wall
            own_cpu = (time.thread_time() - cpu) - (self._io.spent() - io)
            t = self._telemetry
            t.passes.inc()
            t.reconcile_duration.observe(elapsed)
            t.reconcile_cpu.observe(max(own_cpu, 0.0))

    def hold(self, body: Mapping[str, Any], now: datetime, problem: Problem) -> WorkloadResult:
        """A pass that decides nothing because what it would decide on cannot be trusted."""
        self._telemetry.passes.inc()
        return describe_problem(read_header(body), problem, now, self._telemetry)

    def _reconcile(self, body: Mapping[str, Any], now: datetime, view: ClusterView) -> WorkloadResult:
        header = read_header(body)
        observed = self._observer.observe(
            header,
            now,
            view,
            fleet=self._fleet,
            samples=self._buffer,
            scaling=self._scaling,
            monotonic=time.monotonic,
        )
        if isinstance(observed, Problem):
            return describe_problem(header, observed, now, self._telemetry)
        decision = decide(observed, self._settings)
        if self._recorder is not None and decision.inference is not None:
            self._recorder(pass_record(observed, decision.inference.decision))
        acted = act(observed, decision, kube=self._kube, scaling=self._scaling)
        return describe(
            observed, decision, acted, kube=self._kube, settings=self._settings, telemetry=self._telemetry
        )
