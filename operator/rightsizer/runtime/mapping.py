"""From the API's spelling (pydantic models of our CRDs) to the core's policies. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from rightsizer.api.v1alpha1 import (
    DisruptionBudget,
    GPUNodePool,
    GPUNodePoolSpec,
    GPUWorkloadSpec,
    InvalidResource,
    MetricTarget,
    MetricType,
    ScalingMetric,
    ScalingRules,
    TargetType,
    WorkloadType,
)
from rightsizer.core.budgets import NodeBudget, PodPolicy
from rightsizer.core.cost import PricingModel, RunningCosts, overhead_per_gpu_hour
from rightsizer.core.cron import parse_cron
from rightsizer.core.errors import InvalidPool, InvalidSchedule
from rightsizer.core.idle import IdleAction, IdlePolicy
from rightsizer.core.ownership import WorkloadClaim
from rightsizer.core.pools import NewNode, PoolPolicy, ReplacementType, default_gpu_price, instance_price
from rightsizer.core.scaling_policy import ScalingPolicy
from rightsizer.core.scaling_rate import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    LimitKind,
    RateLimit,
    Select,
    StepRule,
)
from rightsizer.core.scaling_signals import SignalKind, SignalTarget, TargetKind
from rightsizer.core.selectors import parse_selector
from rightsizer.core.snapshot import GPU_PRODUCT_LABEL, LabelSelector, Taint
from rightsizer.runtime.settings import PricingDefaults

SHORTHAND_PERIOD_SECONDS = 15
"""Period of maxStep/maxPercent when periodSeconds is unset (HPA's default period)."""


def scaling_policy(spec: GPUWorkloadSpec) -> ScalingPolicy:
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    wake = spec.wake_up
    gpu = gpu_metric(spec)
    target = gpu.target.average_utilization if gpu is not None else None
    return ScalingPolicy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas or max(spec.min_replicas, 1),
        target_utilization=float(target if target is not None else spec.target_utilization),
        scales_on_gpu=spec.metrics is None or gpu is not None,
        signals=tuple(
            SignalTarget(m.name or "", SignalKind(str(m.type)), *_target(m.target))
            for m in spec.metrics or ()
            if m.type is not MetricType.GPU
        ),
        tolerance=float(spec.behavior.tolerance),
        tolerance_up=float(up.tolerance) if up.tolerance is not None else None,
        tolerance_down=float(down.tolerance) if down.tolerance is not None else None,
        scale_up=step_rule(up, DEFAULT_SCALE_UP),
        scale_down=step_rule(down, DEFAULT_SCALE_DOWN),
        wake_threshold=float(wake.threshold) if wake else 0.0,
        wake_replicas=min(wake.replicas, spec.max_replicas or wake.replicas) if wake else 1,
        zero_after=wake.cooldown if wake else None,
    )


def gpu_metric(spec: GPUWorkloadSpec) -> ScalingMetric | None:
    """The Gpu item of spec.metrics; unset metrics mean one, at targetUtilization."""
    if spec.metrics is None:
        return ScalingMetric(
            type=MetricType.GPU,
            target=MetricTarget(type=TargetType.UTILIZATION, average_utilization=spec.target_utilization),
        )
    return next((m for m in spec.metrics if m.type is MetricType.GPU), None)


def gpu_signal(spec: GPUWorkloadSpec) -> str:
    """The DCGM field read for this workload: the Gpu metric's own, else spec.metric.signal."""
    gpu = gpu_metric(spec)
    return str(gpu.signal if gpu is not None and gpu.signal is not None else spec.metric.signal)


def _target(target: MetricTarget) -> tuple[TargetKind, float]:
    if target.type is TargetType.VALUE and target.value is not None:
        return TargetKind.VALUE, float(target.value)
    if target.type is TargetType.AVERAGE_VALUE and target.average_value is not None:
        return TargetKind.AVERAGE_VALUE, float(target.average_value)
    raise ValueError(f"target {target.type} has no value for request signals")  # refused by the API


def step_rule(rules: ScalingRules, default: StepRule) -> StepRule:
    """One direction of ``behavior``; what the user left unset is HPA's default for it."""
    window = rules.stabilization_window_seconds
    period = rules.period_seconds or SHORTHAND_PERIOD_SECONDS
    if rules.policies is not None:
        limits = tuple(RateLimit(LimitKind(str(p.type)), p.value, p.period_seconds) for p in rules.policies)
    elif rules.max_step is not None or rules.max_percent is not None:
        shorthand = ((LimitKind.PODS, rules.max_step), (LimitKind.PERCENT, rules.max_percent))
        limits = tuple(RateLimit(kind, value, period) for kind, value in shorthand if value is not None)
    else:
        limits = default.limits
    return StepRule(
        stabilization_seconds=default.stabilization_seconds if window is None else window,
        limits=limits,
        select=Select(str(rules.select_policy)),
    )


def idle_policy(spec: GPUWorkloadSpec) -> IdlePolicy | None:
    if spec.idle_policy is None:
        return None
    p = spec.idle_policy
    return IdlePolicy(
        threshold_percent=float(p.threshold_percent),
        idle_for=p.idle_for,
        action=IdleAction(str(p.action)),
    )


def pool_matches(pool: GPUNodePoolSpec, node_labels: Mapping[str, str]) -> bool:
    selector = pool.selector
    return bool(selector) and all(node_labels.get(k) == v for k, v in selector.items())


def pool_pricing(
    pool: GPUNodePoolSpec, defaults: PricingDefaults, node_labels: Mapping[str, str] | None = None
) -> PricingModel:
    """The pool's prices; a pool priced by instance type (Karpenter) takes the node's labelled price,
    else the default price of the pool's GPU model, as consolidation prices that node."""
    gpus = pool.gpus_per_node
    overhead = overhead_per_gpu_hour(pool.overhead_per_hour, gpus)
    gpu_hour, node_hour = pool.price_per_gpu_hour, pool.price_per_node_hour
    if pool.priced_by_instance_type:
        node_hour = instance_price(node_labels or {})
        gpu_hour = default_gpu_price(pool.gpu_model) if node_hour is None else None
    running = running_costs(pool, defaults)
    return PricingModel(
        currency=pool.currency,
        gpu_hour=gpu_hour,
        node_hour=node_hour,
        gpus_per_node=gpus if node_hour is not None else None,
        cpu_core_hour=running.cpu_core_hour,
        energy_kwh=running.energy_kwh,
        rated_watts_per_gpu=running.rated_watts_per_gpu,
        pue=running.pue,
        overhead_per_gpu_hour=overhead,
    )


def running_costs(pool: GPUNodePoolSpec, defaults: PricingDefaults) -> RunningCosts:
    """The pool's CPU and energy prices: one source for what its workloads pay and what it costs. A
    pool without watts per GPU draws the operator's default."""
    return RunningCosts(
        cpu_core_hour=pool.cpu_core_price_per_hour or Decimal(0),
        energy_kwh=pool.energy_price_per_kwh,
        rated_watts_per_gpu=pool.watts_per_gpu if pool.watts_per_gpu is not None else defaults.gpu_watts,
        pue=pool.pue,
    )


def read_pools(
    documents: Iterable[object], defaults: PricingDefaults | None = None
) -> tuple[PoolPolicy, ...]:
    """GPUNodePool documents of a file (a ``List`` of them is unpacked) as the core's policies;
    :class:`InvalidPool` naming the object and field for the first that does not validate."""
    pools: list[PoolPolicy] = []
    for doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise InvalidPool("a pool document must be an object (a GPUNodePool)")
        if str(doc.get("kind", "")).endswith("List"):
            pools.extend(read_pools(doc.get("items") or [], defaults))
            continue
        pools.append(read_pool(doc, defaults))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise InvalidPool("two GPUNodePools share a name")
    return tuple(pools)


def read_pool(document: Mapping[str, Any], defaults: PricingDefaults | None = None) -> PoolPolicy:
    """One GPUNodePool validated against the API's model (as the API server validates it) and
    converted into the core's policy; :class:`InvalidPool` naming the field when it does not validate.
    Its status is not read: what an operator wrote there never makes the spec unusable."""
    return pool_policy(pool_model(document), defaults or PricingDefaults())


def pool_model(document: Mapping[str, Any]) -> GPUNodePool:
    """A stored GPUNodePool as the API's model (its status left out); :class:`InvalidPool`."""
    if not isinstance(document.get("metadata") or {}, Mapping):
        raise InvalidPool("a GPUNodePool's metadata must be an object")
    try:
        pool = GPUNodePool.parse({k: v for k, v in document.items() if k != "status"})
    except InvalidResource as exc:
        raise InvalidPool(str(exc)) from exc
    if not pool.metadata.name:
        raise InvalidPool("a GPUNodePool has no metadata.name")
    return pool


def pool_policy(pool: GPUNodePool, defaults: PricingDefaults) -> PoolPolicy:
    """The core's view of a validated GPUNodePool; its CPU and energy prices as its workloads pay them."""
    spec, name = pool.spec, pool.metadata.name
    return PoolPolicy(
        name=name,
        node_selector=LabelSelector(match_labels=tuple(sorted(spec.selector.items()))),
        gpu_model=spec.gpu_model,
        gpus_per_node=spec.gpus_per_node,
        price_per_gpu_hour=spec.price_per_gpu_hour,
        price_per_node_hour=spec.price_per_node_hour,
        overhead_per_hour=spec.overhead_per_hour,
        min_nodes=spec.min_nodes,
        max_nodes=spec.max_nodes,
        consolidation_policy=str(spec.consolidation_policy),
        consolidate_after=spec.consolidate_after,
        scale_down_after=spec.scale_down_after,
        budgets=tuple(_budget(name, i, b) for i, b in enumerate(spec.disruption.budgets)),
        allow_training_disruption=spec.allow_training_disruption,
        replacement_types=tuple(
            ReplacementType(
                instance_type=r.instance_type,
                gpu_model=r.gpu_model,
                gpus_per_node=r.gpus_per_node,
                price_per_node_hour=r.price_per_node_hour,
            )
            for r in spec.replacement_types
        ),
        provider=str(spec.provider.type),
        startup_grace_period=spec.startup_grace_period,
        gang_labels=spec.gang_labels,
        consolidate_unknown_activity=spec.consolidate_when_activity_unknown,
        checkpoint_timeout=spec.checkpoint_timeout,
        make_before_break=spec.disruption.make_before_break,
        running=running_costs(spec, defaults),
        currency=spec.currency,
        new_node=new_node(spec),
    )


def new_node(spec: GPUNodePoolSpec) -> NewNode:
    """The labels and taints of a node the pool's provider adds: its nodeTemplate's, with the pool's
    own nodeSelector and GPU model over the template's labels (the provider always applies them)."""
    template = spec.provider.node_template
    labels = dict(template.labels) if template is not None else {}
    labels.update(spec.node_selector or {})
    labels[GPU_PRODUCT_LABEL] = spec.gpu_model
    taints = tuple(Taint(t.key, t.value or "", str(t.effect)) for t in template.taints) if template else ()
    return NewNode(labels=tuple(sorted(labels.items())), taints=taints)


def _budget(pool: str, index: int, budget: DisruptionBudget) -> NodeBudget:
    # The CRD checks a schedule's shape only; a field out of range would fail at every pass.
    if budget.schedule is not None:
        try:
            parse_cron(budget.schedule)
        except InvalidSchedule as exc:
            raise InvalidPool(
                f"GPUNodePool {pool} is invalid: spec.disruption.budgets.{index}.schedule: {exc}"
            ) from exc
    reasons = tuple(str(r) for r in budget.reasons)
    return NodeBudget(nodes=budget.nodes, schedule=budget.schedule, duration=budget.duration, reasons=reasons)


def default_pricing(defaults: PricingDefaults) -> PricingModel:
    return PricingModel(
        currency=defaults.currency,
        gpu_hour=defaults.gpu_hour,
        cpu_core_hour=defaults.cpu_core_hour,
        energy_kwh=defaults.energy_kwh,
        rated_watts_per_gpu=defaults.gpu_watts,
        pue=defaults.pue,
    )


def workload_pricing(
    spec: GPUWorkloadSpec,
    pools: Sequence[GPUNodePoolSpec],
    node_labels: Sequence[Mapping[str, str]],
    defaults: PricingDefaults,
) -> tuple[PricingModel, str]:
    """The prices that apply: the workload's override, else the pool its pods run in, else defaults.

    Returns the model and where it came from (for the explanation in status)."""
    base, origin = default_pricing(defaults), "operator defaults"
    for labels in node_labels:
        match = next((p for p in pools if pool_matches(p, labels)), None)
        if match is not None:
            base, origin = pool_pricing(match, defaults, labels), f"pool {match.gpu_model}"
            break
    override = spec.pricing
    if override is None or (override.price_per_gpu_hour is None and override.cpu_core_price_per_hour is None):
        return base, origin
    changes: dict[str, Any] = {}
    if override.price_per_gpu_hour is not None:
        changes.update(gpu_hour=override.price_per_gpu_hour, node_hour=None, gpus_per_node=None)
    if override.cpu_core_price_per_hour is not None:
        changes["cpu_core_hour"] = override.cpu_core_price_per_hour
    if override.currency:
        changes["currency"] = override.currency
    fields = {**vars(base), **changes}
    return PricingModel(**fields), "workload pricing override"


def max_history_gap(interval_seconds: float) -> timedelta:
    return timedelta(seconds=2 * interval_seconds)


def workload_claims(
    workloads: Sequence[Mapping[str, Any]],
    selectors: Mapping[str, str],
    unresolved: Mapping[str, str],
) -> list[WorkloadClaim]:
    """What each GPUWorkload says about its pods, for the consolidation planner: protected pods never
    move; training pods move only when the workload allows consolidation; its startup grace period.
    ``workloads`` are GPUWorkloads' metadata and spec; ``selectors`` the /scale selectors read for
    their targets and ``unresolved`` why a target's pods could not be found, both by namespace/name.
    A spec that does not parse (the API server should have refused it) protects every pod it might
    claim."""
    claims = []
    for gw in workloads:
        meta = gw.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        key = f"{namespace}/{name}"
        try:
            spec = GPUWorkloadSpec.model_validate(gw.get("spec") or {})
        except ValidationError as exc:
            raw_target = (gw.get("spec") or {}).get("targetRef") or {}
            claims.append(
                WorkloadClaim(
                    namespace=namespace,
                    name=name,
                    target_kind=str(raw_target.get("kind", "")),
                    target_name=str(raw_target.get("name", "")),
                    policy=PodPolicy(protected=True, workload=key),
                    annotation_value=name,
                    unresolved=f"spec does not parse ({exc.error_count()} error(s))",
                )
            )
            continue
        training = spec.workload_type is WorkloadType.TRAINING
        selector_text = selectors.get(key)
        claims.append(
            WorkloadClaim(
                namespace=namespace,
                name=name,
                target_kind=spec.target_ref.kind,
                target_name=spec.target_ref.name,
                policy=PodPolicy(
                    protected=spec.protection.do_not_disrupt,
                    training=training,
                    allow_disruption=spec.consolidation_allowed,
                    startup_grace=spec.protection.startup_grace_period,
                    workload=key,
                ),
                annotation_value=name,
                selector=parse_selector(selector_text) if selector_text else None,
                unresolved=unresolved.get(key),
            )
        )
    return claims
