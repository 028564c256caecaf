"""An in-memory API server edge for executor tests: nodes, pods and PDBs as `kubectl get -o json`
prints them, and a log of every write in order."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rightsizer.adapters.node_drain import Eviction, EvictionResult
from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.adapters.replica_surge import OwnerState
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget, Taint
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.surge import Owner, SurgeRecord
from rightsizer.runtime.consolidation import Executor
from rightsizer.runtime.drain_steps import ExecutorSettings


class FakeDrain:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.pdb_objects: list[dict[str, Any]] = []
        for obj in objects:
            self.add(obj)
        self.calls: list[tuple[str, ...]] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.refuse: dict[str, str] = {}  # pod key -> why the Eviction API says 429
        self.polls_until_ready = 0  # replacements_ready answers False this many times first
        self.polls = 0
        self.on_evict: list[Any] = []  # callbacks(pod_key) run after an eviction

    def add(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if obj["kind"] == "Node":
            self.nodes[meta["name"]] = copy.deepcopy(obj)
        elif obj["kind"] == "Pod":
            self.pods[f"{meta['namespace']}/{meta['name']}"] = copy.deepcopy(obj)
        else:
            self.pdb_objects.append(copy.deepcopy(obj))

    def _parse(self, items: Sequence[dict[str, Any]]) -> Any:
        return snapshot_from_document({"kind": "List", "items": list(items)})

    # -- DrainEdge --------------------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        raw = self.nodes.get(name)
        return None if raw is None else self._parse([raw]).nodes[0]

    def nodes_list(self) -> tuple[Node, ...]:
        nodes: tuple[Node, ...] = self._parse(list(self.nodes.values())).nodes
        return nodes

    def nodes_annotated(self, key: str) -> list[Node]:
        return [n for n in self.nodes_list() if key in n.annotations]

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        pods: tuple[Pod, ...] = self._parse(
            [p for p in self.pods.values() if p["spec"].get("nodeName") == node]
        ).pods
        return pods

    def pdbs(self, namespaces: Sequence[str]) -> tuple[PodDisruptionBudget, ...]:
        found: tuple[PodDisruptionBudget, ...] = self._parse(
            [p for p in self.pdb_objects if p["metadata"]["namespace"] in namespaces]
        ).pdbs
        return found

    def annotate(self, node: str, annotations: Mapping[str, str | None]) -> None:
        self.calls.append(
            ("annotate", node, *sorted(f"{k}={'-' if v is None else 'set'}" for k, v in annotations.items()))
        )
        current = self.nodes[node]["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def swap_annotation(self, node: str, key: str, expected: str, value: str) -> bool:
        self.calls.append(("swap-annotation", node, key))
        raw = self.nodes.get(node)
        current = (raw or {}).get("metadata", {}).get("annotations", {}).get(key)
        if raw is None or current != expected:
            return False
        raw["metadata"]["annotations"][key] = value
        return True

    def annotate_pod(self, pod: Pod, annotations: Mapping[str, str | None]) -> None:
        self.calls.append(
            ("annotate-pod", pod.key, *sorted(f"{k}={v or '-'}" for k, v in annotations.items()))
        )
        raw = self.pods.get(pod.key)
        if raw is None:
            return
        current = raw["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def set_taint(self, node: str, taint: Taint, present: bool) -> None:
        self.calls.append(("taint" if present else "untaint", node))
        spec = self.nodes[node]["spec"]
        taints = [t for t in spec.get("taints", []) if t["key"] != taint.key]
        if present:
            taints.append({"key": taint.key, "value": taint.value, "effect": taint.effect})
        spec["taints"] = taints

    def evict(self, pod: Pod) -> EvictionResult:
        self.calls.append(("evict", pod.key))
        if pod.key in self.refuse:
            return EvictionResult(Eviction.BLOCKED, self.refuse[pod.key])
        if self.pods.pop(pod.key, None) is None:
            return EvictionResult(Eviction.GONE)
        for callback in self.on_evict:
            callback(pod.key)
        return EvictionResult(Eviction.EVICTED)

    def replacements_ready(self, evicted: Sequence[Pod], drained_node: str) -> tuple[bool, str]:
        self.polls += 1
        if self.polls <= self.polls_until_ready:
            return False, "replacements Pending"
        return True, "all replacements Running"

    def event(self, node: str, type_: str, reason: str, message: str) -> None:
        self.events.append((node, type_, reason, message))

    def tainted(self) -> set[str]:
        return {
            n
            for n, raw in self.nodes.items()
            if any(t["key"] == "rightsizer.io/disrupted" for t in raw["spec"].get("taints", []))
        }


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self, start: datetime = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) -> None:
        self.now = start
        self.slept = 0.0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += timedelta(seconds=seconds)


class FakeSurges:
    """Deployments and StatefulSets for make-before-break: replicas, how many are available (moved by
    the test, or by ``ready_after`` polls once raised), and the surge record; writes go to ``calls``
    (shared with a FakeDrain, so the order of node and owner writes can be asserted)."""

    def __init__(self, calls: list[tuple[str, ...]], owners: Mapping[str, Owner]) -> None:
        self.calls = calls
        self.owners = dict(owners)  # pod key -> owner
        self.replicas: dict[Owner, int] = {}
        self.available: dict[Owner, int] = {}
        self.records: dict[Owner, SurgeRecord] = {}
        self.ready_after: int | None = 0  # reads before a raise is available; None: never
        self.reads = 0
        self.lowest: dict[Owner, int] = {}  # the fewest available replicas each owner ever had

    def add(self, owner: Owner, replicas: int) -> None:
        self.replicas[owner] = self.available[owner] = self.lowest[owner] = replicas

    def lose(self, owner: Owner) -> None:
        """One available replica of ``owner`` went (its pod was evicted)."""
        self.available[owner] -= 1
        self.lowest[owner] = min(self.lowest[owner], self.available[owner])

    def owner_of(self, pod: Pod) -> Owner | None:
        return self.owners.get(pod.key)

    def read(self, owner: Owner) -> OwnerState | None:
        if owner not in self.replicas:
            return None
        self.reads += 1
        record = self.records.get(owner)
        if record is not None and self.ready_after is not None and self.reads > self.ready_after:
            self.available[owner] = max(self.available[owner], self.replicas[owner])
        return OwnerState(self.replicas[owner], self.available[owner], record, "1")

    def raise_(self, owner: Owner, node: str, surge: int) -> SurgeRecord | None:
        self.calls.append(("raise", owner.key, str(surge)))
        if owner not in self.replicas:
            return None
        if owner in self.records:
            return self.records[owner]
        record = SurgeRecord(node, self.replicas[owner], surge, self.available[owner])
        self.records[owner] = record
        self.replicas[owner] = record.raised
        return record

    def raised(self) -> list[tuple[Owner, SurgeRecord]]:
        return list(self.records.items())

    def restore(self, owner: Owner, node: str) -> int | None:
        record = self.records.get(owner)
        if record is None or record.node != node:
            return None
        self.calls.append(("restore", owner.key, str(record.original)))
        del self.records[owner]
        self.replicas[owner] = record.original
        self.available[owner] = min(self.available[owner], record.original)
        return record.original


def surging_executor(edge: FakeDrain, surges: FakeSurges) -> tuple[Executor, FakeProvider, Clock]:
    """An executor over ``edge`` that raises owners through ``surges``, removing through a fake
    provider of pool a100 (nodes a-0, a-1); a 60 s drain timeout, polls every 2 s."""
    clock, provider = Clock(), FakeProvider("a100", ["a-0", "a-1"])
    executor = Executor(
        edge,
        lambda pool: provider if pool == provider.pool else None,
        clock=clock,
        sleep=clock.sleep,
        settings=ExecutorSettings(drain_timeout=timedelta(seconds=60), poll_seconds=2),
        surges=surges,
    )
    return executor, provider, clock
