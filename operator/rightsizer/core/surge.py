"""Make-before-break: which owners a drain raises before it evicts, and by how much.

Evicting a Ready pod of a Deployment or StatefulSet takes it one Ready replica below what it serves
with until the replacement is Ready. For serving workloads that dip is the outage, so before a drain
evicts, it raises each such owner's replicas by the number of its Ready pods it is about to evict,
waits until that many more are available, evicts, and then restores the count.

The pool decides for whom (``spec.disruption.makeBeforeBreak``): ``InferenceOnly`` (default) for pods
of an Inference GPUWorkload, ``Always`` for every Deployment and StatefulSet, ``Never``.

While an owner is raised it carries :data:`SURGE_ANNOTATION` (see :class:`SurgeRecord`): the count it
had, and by how much it is raised. The replica loop reads through it (``unsurged`` / ``surged``): it
sees and sets the count without the surge, so it never takes the surge for a scale to undo, and a
count it sets meanwhile is what the drain restores.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from rightsizer.core.budgets import PodPolicy
from rightsizer.core.snapshot import Pod

SURGE_ANNOTATION = "rightsizer.io/drain-surge"
# Set with the record and dropped with it: owners left raised are found by one filtered list.
SURGE_LABEL = "rightsizer.io/drain-surge"
SURGE_KINDS = frozenset({"Deployment", "StatefulSet"})


class MakeBeforeBreak(StrEnum):
    """Raise a Deployment's or StatefulSet's replicas before evicting its Ready pods, and restore
    them after: InferenceOnly (default) for pods of Inference GPUWorkloads, Always, or Never."""

    ALWAYS = "Always"
    INFERENCE_ONLY = "InferenceOnly"
    NEVER = "Never"


@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """A Deployment or StatefulSet."""

    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Surge:
    """Raise ``owner`` by ``count`` before evicting ``pods`` (its Ready pods on the drained node)."""

    owner: Owner
    count: int
    pods: tuple[str, ...]
    reason: str


def is_inference(policy: PodPolicy | None) -> bool:
    """A pod some GPUWorkload claims that is not Training: an Inference GPUWorkload's."""
    return policy is not None and bool(policy.workload) and not policy.training


def wants_surge(setting: MakeBeforeBreak, policy: PodPolicy | None) -> bool:
    if setting is MakeBeforeBreak.ALWAYS:
        return True
    return setting is MakeBeforeBreak.INFERENCE_ONLY and is_inference(policy)


def plan_surges(
    evicting: Sequence[Pod],
    owners: Mapping[str, Owner | None],
    policies: Mapping[str, PodPolicy],
    setting: MakeBeforeBreak,
) -> tuple[Surge, ...]:
    """One surge per owner that would lose Ready replicas: by how many of its Ready pods are evicted.
    ``owners`` maps a pod key to its Deployment or StatefulSet (None or absent: neither). A pod that
    is not Ready takes nothing away, so it needs no surge."""
    count: Counter[Owner] = Counter()
    pods: dict[Owner, list[str]] = {}
    for pod in evicting:
        owner = owners.get(pod.key)
        if owner is None or owner.kind not in SURGE_KINDS or pod.deleting or pod.ready_since is None:
            continue
        if not wants_surge(setting, policies.get(pod.key)):
            continue
        count[owner] += 1
        pods.setdefault(owner, []).append(pod.key)
    why = "Inference GPUWorkload" if setting is MakeBeforeBreak.INFERENCE_ONLY else "makeBeforeBreak Always"
    return tuple(
        Surge(
            owner,
            count[owner],
            tuple(pods[owner]),
            f"{why}: {count[owner]} Ready pod(s) of {owner.key} evicted → +{count[owner]} replica(s) first",
        )
        for owner in sorted(count)
    )


@dataclass(frozen=True, slots=True)
class SurgeRecord:
    """What an owner carries while raised: the drained node, the count to restore (``original``, as
    the replica loop last set it), by how much it is raised, and how many replicas were available
    before (the surge is Ready once ``available_before + surge`` are)."""

    node: str
    original: int
    surge: int
    available_before: int

    def with_original(self, replicas: int) -> SurgeRecord:
        return replace(self, original=max(replicas, 0))

    @property
    def raised(self) -> int:
        return self.original + self.surge

    @property
    def available_wanted(self) -> int:
        return self.available_before + self.surge

    def to_json(self) -> str:
        return json.dumps(
            {
                "node": self.node,
                "original": self.original,
                "surge": self.surge,
                "availableBefore": self.available_before,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> SurgeRecord | None:
        """None when absent or unreadable: an unreadable record is not ours to act on."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            record = cls(
                node=str(raw["node"]),
                original=int(raw["original"]),
                surge=int(raw["surge"]),
                available_before=int(raw.get("availableBefore") or 0),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return record if record.surge > 0 and record.original >= 0 else None


def unsurged(replicas: int, annotations: Mapping[str, str]) -> int:
    """The count the replica loop sees: the owner's replicas without a drain's surge."""
    record = SurgeRecord.from_json(annotations.get(SURGE_ANNOTATION))
    return replicas if record is None else max(replicas - record.surge, 0)
