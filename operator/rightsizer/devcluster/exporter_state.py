"""The fake dcgm-exporter's view of the cluster: periodic listings of nodes, pods and scenario
ConfigMaps turned into devices, holders and active rules (see scenario.py for what they report).

Stateful only where the real world is: GPU and MIG assignments survive while pods live, and a rule
starts when it was first seen. The clock is injected.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rightsizer.devcluster.api_objects import nodes_from_api, pods_from_api
from rightsizer.devcluster.gpu_devices import (
    Assignment,
    GpuNode,
    GpuPod,
    MigAssignment,
    assign_gpus,
    assign_mig,
)
from rightsizer.devcluster.scenario import (
    DEFAULT_DRIVER_VERSION,
    AppReading,
    GpuReading,
    app_readings,
    gpu_readings,
)
from rightsizer.devcluster.scenario_rules import (
    SCENARIO_KEY,
    SCENARIO_LABEL,
    ActiveRule,
    Rule,
    ScenarioError,
    load_scenario,
)

log = logging.getLogger("rightsizer.fake_dcgm")


@dataclass(frozen=True)
class ClusterObjects:
    """Raw JSON items as the API server lists them."""

    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    configmaps: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[GpuNode, ...]
    pods: Mapping[str, GpuPod]
    assignment: Assignment
    rules: tuple[ActiveRule, ...]
    read_at: datetime
    mig: MigAssignment = field(default_factory=dict)

    def readings(
        self,
        now: datetime,
        node: str | None = None,
        driver: str = DEFAULT_DRIVER_VERSION,
        virtual_gpus: bool = True,
    ) -> list[GpuReading]:
        nodes = [n for n in self.nodes if node is None or n.name == node]
        return gpu_readings(
            nodes,
            self.pods,
            self.assignment,
            self.rules,
            now,
            default_driver=driver,
            mig=self.mig,
            virtual_gpus=virtual_gpus,
        )

    def app_readings(self, node: str | None = None) -> list[AppReading]:
        return app_readings(self.pods, self.rules, node)


@dataclass
class _FileRules:
    path: Path
    mtime_ns: int = -1
    rules: tuple[Rule, ...] = ()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FakeDcgmExporter:
    """Turns periodic cluster listings into a ClusterView."""

    def __init__(
        self,
        lister: Callable[[], ClusterObjects],
        scenario_file: Path | None = None,
        clock: Callable[[], datetime] = _utcnow,
        driver_version: str = DEFAULT_DRIVER_VERSION,
    ) -> None:
        self.lister = lister
        self.clock = clock
        self.driver_version = driver_version
        self._view: ClusterView | None = None
        self._first_seen: dict[tuple[str, str], datetime] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._file: _FileRules | None = None
        if scenario_file is not None:
            self._file = _FileRules(scenario_file)
            self._reload_file(strict=True)

    def view(self) -> ClusterView | None:
        return self._view

    def refresh(self) -> ClusterView:
        objects = self.lister()
        now = self.clock()
        with self._lock:
            nodes = nodes_from_api(objects.nodes)
            pods, warnings = pods_from_api(objects.pods)
            for warning in warnings:
                self._warn_once(warning, warning)
            assignment = assign_gpus(nodes, pods, self._view.assignment if self._view else {})
            mig = assign_mig(nodes, pods, self._view.mig if self._view else {})
            self._reload_file(strict=False)
            rules = self._active_rules(objects.configmaps, now)
            self._view = ClusterView(
                nodes=tuple(sorted(nodes, key=lambda n: n.name)),
                pods={p.uid: p for p in pods},
                assignment=assignment,
                rules=rules,
                read_at=now,
                mig=mig,
            )
            return self._view

    def _active_rules(self, configmaps: Sequence[Mapping[str, Any]], now: datetime) -> tuple[ActiveRule, ...]:
        bound: list[tuple[str, str, Rule]] = []  # (origin, namespace, rule)
        if self._file is not None:
            bound += [(f"file:{self._file.path}", r.namespace or "", r) for r in self._file.rules]
        for cm in sorted(
            configmaps, key=lambda c: (c["metadata"].get("namespace", ""), c["metadata"]["name"])
        ):
            meta = cm["metadata"]
            namespace = meta.get("namespace", "")
            source = f"ConfigMap {namespace}/{meta['name']}"
            text = (cm.get("data") or {}).get(SCENARIO_KEY, "")
            try:
                scenario = load_scenario(text, source, namespace=namespace)
            except ScenarioError as exc:
                self._warn_once(f"{meta.get('uid')}@{meta.get('resourceVersion')}", str(exc))
                continue
            bound += [(f"cm:{meta.get('uid', source)}", namespace, r) for r in scenario.rules]
        active: list[ActiveRule] = []
        seen: dict[tuple[str, str], datetime] = {}
        for index, (origin, namespace, rule) in enumerate(bound):
            key = (f"{origin}#{index}", rule.identity())
            first = self._first_seen.get(key, now)
            seen[key] = first
            active.append(ActiveRule(namespace, rule, rule.start or first))
        # A rule that disappears and comes back starts again.
        self._first_seen = seen
        return tuple(active)

    def _reload_file(self, strict: bool) -> None:
        state = self._file
        if state is None:
            return
        try:
            mtime = state.path.stat().st_mtime_ns
            if mtime == state.mtime_ns:
                return
            state.rules = load_scenario(state.path.read_text(), str(state.path)).rules
            state.mtime_ns = mtime
            log.info("scenario file %s: %d rule(s)", state.path, len(state.rules))
        except (OSError, ScenarioError) as exc:
            if strict:
                raise
            self._warn_once(f"file@{state.path}", f"keeping the previous rules: {exc}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


def kube_lister(api_client: Any, timeout_seconds: float = 10.0) -> Callable[[], ClusterObjects]:
    """Lists nodes, Running pods and scenario ConfigMaps as raw JSON (no model objects: cheap)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def items(response: Any) -> list[Mapping[str, Any]]:
        return list(json.loads(response.data).get("items") or [])

    def list_all() -> ClusterObjects:
        opts: dict[str, Any] = {"_preload_content": False, "_request_timeout": timeout_seconds}
        return ClusterObjects(
            nodes=items(core.list_node(**opts)),
            pods=items(core.list_pod_for_all_namespaces(field_selector="status.phase=Running", **opts)),
            configmaps=items(
                core.list_config_map_for_all_namespaces(label_selector=f"{SCENARIO_LABEL}=true", **opts)
            ),
        )

    return list_all
