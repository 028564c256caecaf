"""Lower bounds on the nodes any plan can end with, for fleets of mixed node shapes.

* :func:`resource_bound` — the resource relaxation: the nodes pinned by unmovable pods stay, and for
  every resource (GPUs, CPU, memory, pod slots) the fewest further nodes, largest first, whose
  capacity covers what every pod requests. Blind to which pod may run where.
* :func:`class_bound` — respects selectors, affinity, taints and the GPU-model pin: nodes that no pod
  constraint tells apart form a *class*; pods with the same requests and the same feasible classes
  form a group. A mixed-integer program (HiGHS through scipy) chooses how many nodes of each class
  stay (integer, at least the pinned ones, at most the ones there are) and how many pods of each group
  go to each class (continuous: pods may be split, so packing losses inside a node are ignored), every
  class's requests within its kept capacity. Its optimum (or HiGHS's dual bound when the time limit
  stops it) is a bound no plan can beat.

Both count DaemonSet pods on every kept node and never move pinned pods. scipy is a benchmark-only
dependency: the operator never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from benchmarks.baselines import Placement, _space
from rightsizer.core.binpack import Constraints, Request, fits, pod_constraints
from rightsizer.core.snapshot import GPU_PRODUCT_LABEL, Node, Pod


def _capacities(placement: Placement) -> tuple[list[list[int]], list[list[int]], int]:
    """Per node: capacity left after DaemonSet pods, and what its pinned pods request."""
    space = _space(placement)
    caps: list[list[int]] = []
    fixed: list[list[int]] = []
    for i, node in enumerate(placement.nodes):
        cap = space.capacity(node.allocatable)
        for pod in placement.daemons[i]:
            for d, a in space.request(pod.requests):
                cap[d] -= a
        used = [0] * len(cap)
        for pod in placement.pinned[i]:
            for d, a in space.request(pod.requests):
                used[d] += a
        caps.append(cap)
        fixed.append(used)
    return caps, fixed, len(space.names)


def resource_bound(placement: Placement) -> int:
    caps, fixed, dims = _capacities(placement)
    demand = [sum(f[d] for f in fixed) for d in range(dims)]
    space = _space(placement)
    for _, pod in placement.movable:
        for d, a in space.request(pod.requests):
            demand[d] += a
    pinned = [i for i in range(len(caps)) if placement.pinned[i]]
    free = [i for i in range(len(caps)) if not placement.pinned[i] and not placement.nodes[i].unschedulable]
    best = len(pinned)
    for d in range(dims):
        covered = sum(caps[i][d] for i in pinned)
        count = len(pinned)
        for c in sorted((caps[i][d] for i in free), reverse=True):
            if covered >= demand[d]:
                break
            covered += c
            count += 1
        best = max(best, count)
    return best


@dataclass(frozen=True)
class ClassBound:
    nodes: int
    optimal: bool  # False: HiGHS's dual bound at the time limit
    classes: int
    groups: int


def _pod_constraints(placement: Placement, i: int, pod: Pod, keep_gpu_model: bool) -> Constraints:
    model = placement.nodes[i].gpu_model
    pins = [(GPU_PRODUCT_LABEL, model)] if keep_gpu_model and pod.gpus() > 0 and model else []
    return pod_constraints(pod, pins)


def class_bound(
    placement: Placement,
    *,
    keep_gpu_model: bool,
    cpu_pods_stay_off_gpu: bool = True,
    time_limit: float = 60.0,
) -> ClassBound:
    """See the module docstring. ``cpu_pods_stay_off_gpu``: CPU-only pods from nodes without GPUs may
    only use nodes without GPUs (the planner's default rule)."""
    space = _space(placement)
    caps, fixed, dims = _capacities(placement)
    nodes = placement.nodes
    constraints = {
        pod.key: _pod_constraints(placement, i, pod, keep_gpu_model) for i, pod in placement.movable
    }
    keys = sorted({k for c in constraints.values() for k in c.label_keys()})
    by_name = any(c.uses_node_name() for c in constraints.values())
    signature_of: dict[object, int] = {}
    members: list[list[int]] = []
    for i, node in enumerate(nodes):
        if node.unschedulable:
            continue
        signature = (
            tuple(node.labels.get(k) for k in keys),
            node.name if by_name else None,
            node.taints,
            tuple(caps[i]),
        )
        cid = signature_of.get(signature)
        if cid is None:
            cid = signature_of[signature] = len(members)
            members.append([])
        members[cid].append(i)
    rep: list[Node] = [nodes[m[0]] for m in members]
    cap = [caps[m[0]] for m in members]
    gpu_class = [rep[c].gpus() > 0 for c in range(len(members))]

    groups: dict[tuple[Request, tuple[int, ...]], int] = {}
    for i, pod in placement.movable:
        request = space.request(pod.requests)
        rule = cpu_pods_stay_off_gpu and pod.gpus() <= 0 and nodes[i].gpus() <= 0
        c_of = constraints[pod.key]
        feasible = tuple(
            c
            for c in range(len(members))
            if fits(cap[c], request)
            and not (rule and gpu_class[c])
            and c_of.admits(rep[c].name, rep[c].labels, rep[c].taints)
        )
        groups[(request, feasible)] = groups.get((request, feasible), 0) + 1
    return _solve(
        members, cap=cap, fixed=fixed, dims=dims, placement=placement, groups=groups, time_limit=time_limit
    )


def _solve(
    members: Sequence[list[int]],
    *,
    cap: Sequence[list[int]],
    fixed: Sequence[list[int]],
    dims: int,
    placement: Placement,
    groups: dict[tuple[Request, tuple[int, ...]], int],
    time_limit: float,
) -> ClassBound:
    classes = len(members)
    pinned = [sum(1 for i in m if placement.pinned[i]) for m in members]
    fixed_c = [[sum(fixed[i][d] for i in m) for d in range(dims)] for m in members]
    variables = classes  # y_c first, then one x per (group, feasible class)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    row = 0
    x_of: list[tuple[Request, int, int]] = []
    for (request, feasible), count in sorted(groups.items()):
        if not feasible:
            raise SystemExit(f"a pod group fits on no node class ({count} pods): the fleet is infeasible")
        for c in feasible:
            x_of.append((request, c, variables))
            rows.append(row)
            cols.append(variables)
            vals.append(1.0)
            variables += 1
        lower.append(count)
        upper.append(count)
        row += 1
    scale = [max([1, *(cap[c][d] for c in range(classes))]) for d in range(dims)]
    capacity_row = {(c, d): row + c * dims + d for c in range(classes) for d in range(dims)}
    for request, c, x in x_of:
        for d, amount in request:
            rows.append(capacity_row[(c, d)])
            cols.append(x)
            vals.append(amount / scale[d])
    for c in range(classes):
        for d in range(dims):
            rows.append(capacity_row[(c, d)])
            cols.append(c)
            vals.append(-cap[c][d] / scale[d])
            lower.append(-np.inf)
            upper.append(-fixed_c[c][d] / scale[d])
    matrix = coo_array((vals, (rows, cols)), shape=(row + classes * dims, variables)).tocsr()
    objective = np.zeros(variables)
    objective[:classes] = 1.0
    integrality = np.zeros(variables)
    integrality[:classes] = 1
    var_lower = np.zeros(variables)
    var_upper = np.full(variables, np.inf)
    var_lower[:classes] = pinned
    var_upper[:classes] = [len(m) for m in members]
    result = milp(
        objective,
        integrality=integrality,
        bounds=Bounds(var_lower, var_upper),
        constraints=LinearConstraint(matrix, lower, upper),
        options={"time_limit": time_limit, "disp": False},
    )
    if result.status == 0:
        return ClassBound(math.ceil(result.fun - 1e-6), True, classes, len(groups))
    dual = getattr(result, "mip_dual_bound", None)
    if dual is None or not math.isfinite(dual):
        raise SystemExit(f"HiGHS found no bound: {result.message}")
    return ClassBound(math.ceil(dual - 1e-6), False, classes, len(groups))
