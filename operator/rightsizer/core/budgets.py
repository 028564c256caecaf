"""What may be disrupted, and how much at once: protection rules and disruption budgets (whose
windows are cron schedules, core/cron.py).

How the planner learns that a pod is protected (first match wins, see :func:`pod_disposition`):

* stays in place without blocking its node: terminating pods, mirror (static) pods, DaemonSet pods;
* blocks its node (never evicted):
  - annotations ``rightsizer.io/do-not-disrupt: "true"``, ``karpenter.sh/do-not-disrupt: "true"``,
    ``cluster-autoscaler.kubernetes.io/safe-to-evict: "false"``;
  - a :class:`PodPolicy` with ``protected`` (the caller derives it from GPUWorkloads' protection);
  - no controller ownerReference (nothing would recreate it);
  - training pods unless allowed: a pod is training when its :class:`PodPolicy` says so (a Training
    GPUWorkload), when label or annotation ``rightsizer.io/workload-type`` is ``Training``, or when its
    controller is a training-job kind (PyTorchJob, TFJob, MPIJob, ...). Allowed by the pool's
    ``allowTrainingDisruption``, the planner option or the policy's ``allow_disruption``;
  - emptyDir/hostPath volumes, unless ``cluster-autoscaler.kubernetes.io/safe-to-evict: "true"``, all
    such volumes are listed in ``cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes``, or
    the planner option allows local storage;
  - a PodDisruptionBudget with ``disruptionsAllowed: 0``, or more than one PDB (the Eviction API
    refuses those); budgets above zero are counted per drained node by the consolidator;
  - required pod affinity (co-location with other pods is not simulated);
  - with a ``now`` (see :mod:`rightsizer.core.protections`): ``rightsizer.io/do-not-disrupt-until`` in
    the future or unreadable, a pod still in its startup grace period, a pod of a gang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rightsizer.core.cron import last_fire, parse_cron
from rightsizer.core.protections import gang_of, protected_until, shielded
from rightsizer.core.snapshot import Node, Pod, PodDisruptionBudget

DO_NOT_DISRUPT = ("rightsizer.io/do-not-disrupt", "karpenter.sh/do-not-disrupt")
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
SAFE_TO_EVICT_LOCAL_VOLUMES = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
WORKLOAD_TYPE = "rightsizer.io/workload-type"
DISRUPTED_TAINT = "rightsizer.io/disrupted"
# Karpenter's taints: a node it is disrupting (draining before deleting its NodeClaim), and a node it
# launched that has not registered yet. Either node is Karpenter's to finish: never a source or a
# destination of our plans, and it counts against budgets as Karpenter counts it.
KARPENTER_DISRUPTED_TAINT = "karpenter.sh/disrupted"
KARPENTER_UNREGISTERED_TAINT = "karpenter.sh/unregistered"
TRAINING_OWNER_KINDS = frozenset(
    {"PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob", "TrainJob", "RayJob"}
)


# ---------------------------------------------------------------------------------------------
# Pod protection


@dataclass(frozen=True, slots=True)
class PodPolicy:
    """What GPUWorkloads say about one pod (keyed by ``namespace/name`` in the planner input)."""

    protected: bool = False
    training: bool = False
    allow_disruption: bool = False
    startup_grace: timedelta | None = None  # the GPUWorkload's; None: the pool's
    workload: str = ""  # namespace/name of the GPUWorkload that says so, for reasons


@dataclass(frozen=True, slots=True)
class TimedRules:
    """The protections that need the time and the pool: see :mod:`rightsizer.core.protections`."""

    now: datetime
    startup_grace: timedelta = timedelta(0)
    gang_labels: tuple[str, ...] = ()


class Mobility(StrEnum):
    MOVABLE = "movable"
    STAYS = "stays"  # not moved, does not block removing its node (DaemonSet, mirror, terminating)
    BLOCKS = "blocks"  # not moved, and its node is kept


@dataclass(frozen=True, slots=True)
class Disposition:
    mobility: Mobility
    reason: str


MOVABLE = Disposition(Mobility.MOVABLE, "movable")


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def is_training(pod: Pod, policy: PodPolicy | None) -> bool:
    if policy is not None and policy.training:
        return True
    marker = (pod.labels.get(WORKLOAD_TYPE) or pod.annotations.get(WORKLOAD_TYPE) or "").lower()
    if marker == "training":
        return True
    owner = pod.controller
    return owner is not None and owner.kind in TRAINING_OWNER_KINDS


def pod_disposition(
    pod: Pod,
    *,
    policy: PodPolicy | None,
    pdbs: Sequence[PodDisruptionBudget],
    allow_training: bool,
    allow_local_storage: bool,
    timed: TimedRules | None = None,
) -> Disposition:
    """Classify one bound pod: movable, stays without blocking, or blocks its node (with why)."""
    if pod.deleting:
        return Disposition(Mobility.STAYS, "terminating")
    if pod.is_mirror:
        return Disposition(Mobility.STAYS, "mirror (static) pod")
    if pod.is_daemon:
        return Disposition(Mobility.STAYS, "DaemonSet pod")
    for annotation in DO_NOT_DISRUPT:
        if _true(pod.annotations.get(annotation)):
            return Disposition(Mobility.BLOCKS, f"annotated {annotation}=true")
    safe_to_evict = pod.annotations.get(SAFE_TO_EVICT, "").strip().lower()
    if safe_to_evict == "false":
        return Disposition(Mobility.BLOCKS, f'annotated {SAFE_TO_EVICT}="false"')
    if policy is not None and policy.protected:
        by = f" {policy.workload}" if policy.workload else ""
        return Disposition(Mobility.BLOCKS, f"protected by its GPUWorkload{by}")
    if timed is not None and (why := _timed_block(pod, policy, timed)) is not None:
        return Disposition(Mobility.BLOCKS, why)
    if pod.controller is None:
        return Disposition(Mobility.BLOCKS, "no controller would recreate it (bare pod)")
    if is_training(pod, policy):
        allowed = allow_training or (policy is not None and policy.allow_disruption)
        if not allowed:
            return Disposition(Mobility.BLOCKS, "training pod (disruption not allowed by pool or workload)")
    if pod.local_volumes and not allow_local_storage and safe_to_evict != "true":
        safe = {v.strip() for v in pod.annotations.get(SAFE_TO_EVICT_LOCAL_VOLUMES, "").split(",")}
        unsafe = [v for v in pod.local_volumes if v not in safe]
        if unsafe:
            return Disposition(Mobility.BLOCKS, f"local storage (emptyDir/hostPath volume {unsafe[0]!r})")
    if len(pdbs) > 1:
        names = ", ".join(sorted(p.key for p in pdbs))
        return Disposition(Mobility.BLOCKS, f"matched by several PDBs ({names}); the Eviction API refuses")
    if pdbs and pdbs[0].disruptions_allowed <= 0:
        return Disposition(Mobility.BLOCKS, f"PDB {pdbs[0].key} allows no disruption (disruptionsAllowed=0)")
    if pod.pod_affinity:
        return Disposition(Mobility.BLOCKS, "required pod affinity (co-location is not simulated)")
    return MOVABLE


def _timed_block(pod: Pod, policy: PodPolicy | None, timed: TimedRules) -> str | None:
    until = protected_until(pod.annotations, timed.now, "pod")
    if until.protected:
        return until.reason
    grace = timed.startup_grace if policy is None or policy.startup_grace is None else policy.startup_grace
    if (starting := shielded(pod, grace, timed.now)) is not None:
        return starting
    if (gang := gang_of(pod, timed.gang_labels)) is not None:
        return f"member of gang {gang} (gangs move together or not at all: not moved)"
    return None


def node_block_reason(node: Node, now: datetime | None = None) -> str | None:
    """Why a node must not be disrupted by this plan regardless of its pods, or None."""
    for annotation in DO_NOT_DISRUPT:
        if _true(node.annotations.get(annotation)):
            return f"node annotated {annotation}=true"
    if now is not None and (until := protected_until(node.annotations, now, "node")).protected:
        return until.reason
    if _true(node.annotations.get(SCALE_DOWN_DISABLED)):
        return f"node annotated {SCALE_DOWN_DISABLED}=true"
    if node.deleting:
        return "node is already being deleted"
    if any(t.key == DISRUPTED_TAINT for t in node.taints):
        return "node is already being disrupted (resumed by the executor)"
    if any(t.key == KARPENTER_DISRUPTED_TAINT for t in node.taints):
        return f"Karpenter is disrupting the node (taint {KARPENTER_DISRUPTED_TAINT}): left to Karpenter"
    if any(t.key == KARPENTER_UNREGISTERED_TAINT for t in node.taints):
        return f"the node has not registered with Karpenter yet (taint {KARPENTER_UNREGISTERED_TAINT})"
    if node.unschedulable:
        return "node is cordoned by someone else"
    if not node.ready:
        return "node is NotReady"
    return None


def is_disrupting(node: Node) -> bool:
    """Nodes that count against budgets: being deleted, being drained (by us or by Karpenter), or
    NotReady (as Karpenter counts them)."""
    return node.deleting or not node.ready or any(t.key in DISRUPTION_TAINTS for t in node.taints)


DISRUPTION_TAINTS = frozenset({DISRUPTED_TAINT, KARPENTER_DISRUPTED_TAINT, KARPENTER_UNREGISTERED_TAINT})


# ---------------------------------------------------------------------------------------------
# Disruption budgets and consolidateAfter

# Karpenter's default when a pool names no budget: 10% of its nodes at once.
DEFAULT_BUDGET = "10%"
REASON_EMPTY = "Empty"
REASON_UNDERUTILIZED = "Underutilized"
REASONS = (REASON_EMPTY, REASON_UNDERUTILIZED, "Drifted")


@dataclass(frozen=True, slots=True)
class NodeBudget:
    """At most ``nodes`` ("3" or "10%") of the pool disrupted at once, while the schedule is active."""

    nodes: str
    schedule: str | None = None
    duration: timedelta | None = None
    reasons: tuple[str, ...] = ()  # empty: applies to every reason


def budget_active(budget: NodeBudget, now: datetime) -> bool:
    """A budget without a schedule always applies; a scheduled one for `duration` after each firing."""
    if budget.schedule is None or budget.duration is None:
        return True
    return last_fire(parse_cron(budget.schedule), now, now - budget.duration) is not None


def budget_nodes(nodes: str, pool_size: int) -> int:
    """ "3" → 3; "10%" of the pool, rounded up (Karpenter rounds percentages up)."""
    if nodes.endswith("%"):
        return -(-pool_size * int(nodes[:-1]) // 100)
    return int(nodes)


def allowed_disruptions(
    budgets: Sequence[NodeBudget], pool_size: int, disrupting: int, now: datetime, reason: str
) -> int:
    """Nodes of a pool with these budgets this plan may disrupt for `reason`: the most restrictive
    active budget minus nodes already disrupting. No budgets: the default 10%. Budgets given but none
    active: no limit."""
    if not budgets:
        limit = budget_nodes(DEFAULT_BUDGET, pool_size)
    else:
        limits = [
            budget_nodes(b.nodes, pool_size)
            for b in budgets
            if (not b.reasons or reason in b.reasons) and budget_active(b, now)
        ]
        limit = min(limits) if limits else pool_size
    return max(0, limit - disrupting)


def consolidation_due(
    consolidate_after: timedelta, since: datetime | None, now: datetime
) -> timedelta | None:
    """None when the node has been a candidate for at least consolidateAfter; else the time left."""
    if since is None or consolidate_after <= timedelta(0):
        return None
    left = since + consolidate_after - now
    return left if left > timedelta(0) else None
