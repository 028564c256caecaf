"""In-memory targets for unit tests and benchmarks of the workload loop: the same calls as
`KubeWorkloads`, no API server. Every write is recorded so a test can assert what was done."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from rightsizer.adapters.kube import Scale, TargetNotFound, TargetNotScalable, TargetRef


@dataclass
class FakeTargets:
    scales: dict[tuple[str, str, str], Scale] = field(default_factory=dict)
    pod_annotations: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    writes: list[tuple[str, str, str, object]] = field(default_factory=list)
    reads: int = 0

    def add(  # noqa: PLR0917 - one target as tests describe it
        self,
        namespace: str,
        ref: TargetRef,
        replicas: int,
        selector: str,
        can_suspend: bool = False,
        can_scale: bool = True,
        scaled_by: str | None = None,
    ) -> None:
        self.scales[(namespace, ref.kind, ref.name)] = Scale(
            replicas, replicas, selector, can_suspend, can_scale=can_scale, scaled_by=scaled_by
        )

    def _key(self, namespace: str, ref: TargetRef) -> tuple[str, str, str]:
        key = (namespace, ref.kind, ref.name)
        if key not in self.scales:
            raise TargetNotFound(namespace, ref)
        return key

    def read_scale(self, namespace: str, ref: TargetRef) -> Scale:
        self.reads += 1
        return self.scales[self._key(namespace, ref)]

    def set_replicas(self, namespace: str, ref: TargetRef, replicas: int) -> None:
        key = self._key(namespace, ref)
        if not self.scales[key].can_scale:
            raise TargetNotScalable(namespace, ref, f"a {ref.kind} like this one has no replica count")
        self.scales[key] = replace(self.scales[key], desired=replicas, current=replicas)
        self.writes.append(("scale", namespace, ref.name, replicas))

    def suspend(self, namespace: str, ref: TargetRef, suspend: bool = True) -> None:
        key = self._key(namespace, ref)
        self.scales[key] = replace(self.scales[key], suspended=suspend)
        self.writes.append(("suspend", namespace, ref.name, suspend))

    def annotate_target(self, namespace: str, ref: TargetRef, annotations: Mapping[str, str | None]) -> None:
        key = self._key(namespace, ref)
        merged = {**self.scales[key].annotations, **annotations}
        kept = {k: v for k, v in merged.items() if v is not None}
        self.scales[key] = replace(self.scales[key], annotations=kept)
        self.writes.append(("annotate", namespace, ref.name, dict(annotations)))

    def annotate_pod(self, namespace: str, pod: str, annotations: Mapping[str, str | None]) -> None:
        current = self.pod_annotations.setdefault((namespace, pod), {})
        current.update({k: v for k, v in annotations.items() if v is not None})
        self.writes.append(("annotate-pod", namespace, pod, dict(annotations)))
