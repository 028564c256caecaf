"""Which GPUWorkload a pod belongs to, from the first second the pod exists.

A pod belongs to a GPUWorkload when any of these says so (several may; the most protective policy
wins):

* its owner chain reaches the workload's target (pod → ReplicaSet → Deployment, pod → StatefulSet,
  pod → Job, pod → any controller), read from the pod's and the ReplicaSets' ownerReferences;
* the target's ``/scale`` selector matches the pod's labels (targets that are not apps/v1 kinds);
* the ``rightsizer.io/workload`` annotation the workload loop writes names it.

What cannot be resolved does not mean "no workload": a GPUWorkload whose target's selector could not
be read lends its policy to every unclaimed pod of its namespace, so a protected workload stays
protected while the API server is unhappy (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from rightsizer.core.budgets import PodPolicy
from rightsizer.core.matching import selector_matches
from rightsizer.core.snapshot import LabelSelector, Pod

# How far up ownerReferences are followed: pod → ReplicaSet → Deployment, pod → Job → JobSet/CronJob.
_MAX_OWNER_HOPS = 3


@dataclass(frozen=True, slots=True)
class WorkloadClaim:
    """What one GPUWorkload claims: its target, how to find the target's pods, and its policy."""

    namespace: str
    name: str
    target_kind: str
    target_name: str
    policy: PodPolicy
    annotation_value: str = ""  # the rightsizer.io/workload value its pods carry (the GPUWorkload name)
    selector: LabelSelector | None = None  # the target's /scale selector, when one was read
    unresolved: str | None = None  # why the target's pods could not be found this pass

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# (namespace, kind, name) of an owner → its own controller's (kind, name)
Owners = Mapping[tuple[str, str, str], tuple[str, str]]


def owner_chain(pod: Pod, owners: Owners) -> list[tuple[str, str]]:
    """(kind, name) of the pod's controller, its controller's controller, … as far as known."""
    chain: list[tuple[str, str]] = []
    controller = pod.controller
    if controller is None:
        return chain
    current = (controller.kind, controller.name)
    for _ in range(_MAX_OWNER_HOPS):
        chain.append(current)
        parent = owners.get((pod.namespace, *current))
        if parent is None:
            break
        current = parent
    return chain


def claimed_by(pod: Pod, claim: WorkloadClaim, owners: Owners, annotation: str) -> bool:
    if pod.namespace != claim.namespace:
        return False
    if claim.annotation_value and pod.annotations.get(annotation) == claim.annotation_value:
        return True
    if (claim.target_kind, claim.target_name) in owner_chain(pod, owners):
        return True
    return claim.selector is not None and selector_matches(claim.selector, pod.labels)


def pod_policies(
    pods: Iterable[Pod], claims: Sequence[WorkloadClaim], owners: Owners, annotation: str
) -> dict[str, PodPolicy]:
    """The policy of every pod some GPUWorkload claims, keyed ``namespace/name``."""
    by_namespace: dict[str, list[WorkloadClaim]] = {}
    for claim in claims:
        by_namespace.setdefault(claim.namespace, []).append(claim)
    policies: dict[str, PodPolicy] = {}
    for pod in pods:
        candidates = by_namespace.get(pod.namespace, ())
        if not candidates:
            continue
        mine = [c.policy for c in candidates if claimed_by(pod, c, owners, annotation)]
        if not mine:
            # Pods nobody could claim take the policy of every workload whose pods are unknown now.
            mine = [c.policy for c in candidates if c.unresolved is not None and restricts(c.policy)]
        if mine:
            policies[pod.key] = strictest(mine)
    return policies


def restricts(policy: PodPolicy) -> bool:
    """Does this policy forbid anything a pod without a workload would be allowed?"""
    return policy.protected or policy.training or policy.startup_grace is not None


def strictest(policies: Sequence[PodPolicy]) -> PodPolicy:
    first = policies[0]
    if len(policies) == 1:
        return first
    graces = [p.startup_grace for p in policies if p.startup_grace is not None]
    return replace(
        first,
        protected=any(p.protected for p in policies),
        training=any(p.training for p in policies),
        allow_disruption=all(p.allow_disruption for p in policies),
        startup_grace=max(graces, default=None),
        workload=", ".join(sorted({p.workload for p in policies if p.workload})),
    )
