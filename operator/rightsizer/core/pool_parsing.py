"""GPUNodePool documents read into the planner's :class:`~rightsizer.core.pools.PoolPolicy`.

Documents are ``rightsizer.io/v1alpha1`` objects already decoded from YAML/JSON (a pools file for
``rightsizer plan``, or the API server's list). The parser is small and strict and names the field at
fault, so the core does not depend on the API package's models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from rightsizer.api import durations
from rightsizer.core.budgets import DEFAULT_BUDGET, REASONS, NodeBudget
from rightsizer.core.cron import parse_cron
from rightsizer.core.errors import InvalidPool, InvalidQuantity, InvalidSchedule
from rightsizer.core.pools import WHEN_EMPTY, WHEN_UNDERUTILIZED, PoolPolicy, ReplacementType
from rightsizer.core.quantity import parse_quantity
from rightsizer.core.snapshot import KARPENTER_NODEPOOL_LABEL, LabelSelector, Requirement
from rightsizer.core.surge import MakeBeforeBreak

API_VERSION = "rightsizer.io/v1alpha1"


# ---------------------------------------------------------------------------------------------
# Durations: the API's one grammar (the CRD's pattern); "Never" is read where it is allowed


def parse_duration(text: object, where: str) -> timedelta:
    """A duration as the CRD accepts it (``30s``, ``10m``, ``1h30m``), or :class:`InvalidPool`."""
    try:
        if not isinstance(text, str):
            raise durations.InvalidDuration(text)
        return durations.parse_duration(text)
    except durations.InvalidDuration as exc:
        raise InvalidPool(f"{where}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# GPUNodePool documents → PoolPolicy


def parse_pools(documents: Iterable[object]) -> tuple[PoolPolicy, ...]:
    """Read GPUNodePool documents (a ``List`` of them is unpacked). Other kinds are refused."""
    pools: list[PoolPolicy] = []
    for doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise InvalidPool("a pool document must be an object (a GPUNodePool)")
        if str(doc.get("kind", "")).endswith("List"):
            pools.extend(parse_pools(doc.get("items") or []))
            continue
        pools.append(parse_pool(doc))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise InvalidPool("two GPUNodePools share a name")
    return tuple(pools)


def _map(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPool(f"{where} must be an object")
    return value


def _decimal(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidPool(f"{where}: {value!r} is not a number")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidPool(f"{where}: {value!r} is not a number") from exc
    if not result.is_finite() or result < 0:
        raise InvalidPool(f"{where}: {value!r} must be a non-negative number")
    return result


def _int(value: object, where: str, default: int | None) -> int | None:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidPool(f"{where}: {value!r} must be a non-negative integer")
    return value


def _selector(value: object, where: str) -> LabelSelector:
    raw = _map(value, where)
    if "matchLabels" in raw or "matchExpressions" in raw:
        labels = _map(raw.get("matchLabels"), f"{where}.matchLabels")
        expressions = []
        for entry in raw.get("matchExpressions") or []:
            e = _map(entry, f"{where}.matchExpressions")
            if e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise InvalidPool(f"{where}.matchExpressions: bad operator {e.get('operator')!r}")
            expressions.append(
                Requirement(
                    str(e.get("key", "")), str(e["operator"]), tuple(str(v) for v in e.get("values") or [])
                )
            )
        return LabelSelector(
            match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            match_expressions=tuple(expressions),
        )
    return LabelSelector(match_labels=tuple(sorted((str(k), str(v)) for k, v in raw.items())))


def _validate_budget_nodes(value: str, where: str) -> None:
    text = value[:-1] if value.endswith("%") else value
    if not text.isdigit() or (value.endswith("%") and int(text) > 100):
        raise InvalidPool(f'{where}: {value!r} must be a node count ("3") or a percentage ("10%")')


def _budget(raw: object, where: str) -> NodeBudget:
    entry = _map(raw, where)
    nodes = str(entry.get("nodes", DEFAULT_BUDGET))
    _validate_budget_nodes(nodes, f"{where}.nodes")
    schedule = entry.get("schedule")
    duration = entry.get("duration")
    if (schedule is None) != (duration is None):
        raise InvalidPool(f"{where}: schedule and duration must be given together")
    if schedule is not None:
        try:
            parse_cron(str(schedule))
        except InvalidSchedule as exc:
            raise InvalidPool(f"{where}.schedule: {exc}") from exc
    reasons = tuple(str(r) for r in entry.get("reasons") or [])
    for reason in reasons:
        if reason not in REASONS:
            raise InvalidPool(f"{where}.reasons: unknown reason {reason!r} (Empty, Underutilized, Drifted)")
    return NodeBudget(
        nodes=nodes,
        schedule=str(schedule) if schedule is not None else None,
        duration=parse_duration(duration, f"{where}.duration") if duration is not None else None,
        reasons=reasons,
    )


def parse_pool(doc: Mapping[str, Any]) -> PoolPolicy:
    kind = doc.get("kind")
    if kind != "GPUNodePool":
        raise InvalidPool(f"expected kind GPUNodePool, got {kind!r}")
    api_version = doc.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise InvalidPool(f"GPUNodePool apiVersion must be {API_VERSION}, got {api_version!r}")
    meta = _map(doc.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidPool("a GPUNodePool has no metadata.name")
    where = f"GPUNodePool {name}: spec"
    spec = _map(doc.get("spec"), where)
    policy = str(spec.get("consolidationPolicy", WHEN_UNDERUTILIZED))
    if policy == "WhenEmptyOrUnderutilized":
        policy = WHEN_UNDERUTILIZED
    if policy not in (WHEN_EMPTY, WHEN_UNDERUTILIZED):
        raise InvalidPool(f"{where}.consolidationPolicy: {policy!r} is not WhenEmpty or WhenUnderutilized")
    after_raw = spec.get("consolidateAfter", "5m")
    consolidate_after = (
        None if after_raw == "Never" else parse_duration(after_raw, f"{where}.consolidateAfter")
    )
    disruption = _map(spec.get("disruption"), f"{where}.disruption")
    budgets = tuple(
        _budget(b, f"{where}.disruption.budgets[{i}]") for i, b in enumerate(disruption.get("budgets") or [])
    )
    make_before_break = str(disruption.get("makeBeforeBreak", MakeBeforeBreak.INFERENCE_ONLY))
    if make_before_break not in set(MakeBeforeBreak):
        raise InvalidPool(
            f"{where}.disruption.makeBeforeBreak: {make_before_break!r} is not Always, InferenceOnly or Never"
        )
    replacements = []
    for i, raw in enumerate(spec.get("replacementTypes") or []):
        entry = _map(raw, f"{where}.replacementTypes[{i}]")
        rwhere = f"{where}.replacementTypes[{i}]"
        instance_type = entry.get("instanceType")
        price = _decimal(entry.get("pricePerNodeHour"), f"{rwhere}.pricePerNodeHour")
        if not isinstance(instance_type, str) or not instance_type or price is None:
            raise InvalidPool(f"{rwhere}: instanceType and pricePerNodeHour are required")
        cpu = entry.get("cpu")
        memory = entry.get("memory")
        try:
            replacements.append(
                ReplacementType(
                    instance_type=instance_type,
                    gpu_model=str(entry["gpuModel"]) if entry.get("gpuModel") else None,
                    gpus_per_node=_int(entry.get("gpusPerNode"), f"{rwhere}.gpusPerNode", 0) or 0,
                    price_per_node_hour=price,
                    cpu=parse_quantity(cpu) if cpu is not None else None,
                    memory=parse_quantity(memory) if memory is not None else None,
                )
            )
        except InvalidQuantity as exc:
            raise InvalidPool(f"{rwhere}: {exc}") from exc
    min_nodes = _int(spec.get("minNodes"), f"{where}.minNodes", 0) or 0
    max_nodes = _int(spec.get("maxNodes"), f"{where}.maxNodes", None)
    if max_nodes is not None and max_nodes < min_nodes:
        raise InvalidPool(f"{where}: maxNodes {max_nodes} is below minNodes {min_nodes}")
    provider = _map(spec.get("provider"), f"{where}.provider")
    selector = spec.get("nodeSelector")
    if not selector and provider.get("type") == "karpenter" and provider.get("nodePool"):
        selector = {KARPENTER_NODEPOOL_LABEL: str(provider["nodePool"])}  # the NodePool's own nodes
    return PoolPolicy(
        name=name,
        node_selector=_selector(selector, f"{where}.nodeSelector"),
        gpu_model=str(spec["gpuModel"]) if spec.get("gpuModel") else None,
        gpus_per_node=_int(spec.get("gpusPerNode"), f"{where}.gpusPerNode", None),
        price_per_gpu_hour=_decimal(spec.get("pricePerGpuHour"), f"{where}.pricePerGpuHour"),
        price_per_node_hour=_decimal(spec.get("pricePerNodeHour"), f"{where}.pricePerNodeHour"),
        overhead_per_hour=_decimal(spec.get("overheadPerHour"), f"{where}.overheadPerHour") or Decimal(0),
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        consolidation_policy=policy,
        consolidate_after=consolidate_after,
        budgets=budgets,
        allow_training_disruption=bool(spec.get("allowTrainingDisruption", False)),
        replacement_types=tuple(replacements),
        provider=str(provider.get("type", "none")),
        startup_grace_period=parse_duration(
            spec.get("startupGracePeriod", "10m"), f"{where}.startupGracePeriod"
        ),
        gang_labels=tuple(str(label) for label in spec.get("gangLabels") or ()),
        consolidate_unknown_activity=bool(spec.get("consolidateWhenActivityUnknown", False)),
        checkpoint_timeout=parse_duration(spec.get("checkpointTimeout", "10m"), f"{where}.checkpointTimeout"),
        make_before_break=MakeBeforeBreak(make_before_break),
    )
