"""Reading a :class:`~rightsizer.core.snapshot.Snapshot` from Kubernetes JSON.

Built from the JSON of ``kubectl get nodes,pods,pdb -A -o json`` (a ``List``) or from the same
objects listed through the API. A snapshot that cannot be read is refused with
:class:`InvalidSnapshot` naming the object and field: reading a broken quantity as zero would plan
moves onto nodes that cannot hold the pods. Kept apart from the model so that code which only
reasons about a snapshot does not carry the parser's field-by-field validation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from rightsizer.core.errors import InvalidQuantity, InvalidSnapshot
from rightsizer.core.quantity import parse_quantity
from rightsizer.core.snapshot import (
    LabelSelector,
    Node,
    NodeSelectorTerm,
    OwnerReference,
    Pod,
    PodAffinityTerm,
    PodDisruptionBudget,
    Requirement,
    Snapshot,
    SpreadConstraint,
    Taint,
    Toleration,
)
from rightsizer.core.timestamps import parse_time

# kubelet's default max pods, used when a (hand-written) node omits `pods` from allocatable.
DEFAULT_MAX_PODS = Decimal(110)


def snapshot_from_json(text: str | bytes) -> Snapshot:
    """Parse the JSON text of ``kubectl get nodes,pods,pdb -A -o json``."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSnapshot(
            f"snapshot is not JSON ({exc}); produce it with `kubectl get nodes,pods,pdb -A -o json`"
        ) from exc
    return snapshot_from_document(document)


def snapshot_from_document(document: object) -> Snapshot:
    """Build a snapshot from a decoded ``List`` (or ``NodeList``/``PodList``...) document."""
    if not isinstance(document, Mapping) or not str(document.get("kind", "")).endswith("List"):
        raise InvalidSnapshot(
            "snapshot must be a Kubernetes List with `items` (the output of "
            "`kubectl get nodes,pods,pdb -A -o json`)"
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise InvalidSnapshot("snapshot List has no `items` array")
    list_kind = str(document["kind"])
    implied_kind = list_kind[: -len("List")] if list_kind != "List" else ""
    nodes: list[Node] = []
    pods: list[Pod] = []
    pdbs: list[PodDisruptionBudget] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidSnapshot(f"items[{index}] is not an object")
        kind = item.get("kind") or implied_kind
        if kind == "Node":
            nodes.append(_node(item))
        elif kind == "Pod":
            pods.append(_pod(item))
        elif kind == "PodDisruptionBudget":
            pdbs.append(_pdb(item))
        elif not kind:
            raise InvalidSnapshot(f"items[{index}] has no `kind`")
        # Other kinds (Services, ...) carry nothing the planner needs and are skipped.
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise InvalidSnapshot("snapshot lists the same node twice")
    return Snapshot(nodes=tuple(nodes), pods=tuple(pods), pdbs=tuple(pdbs))


def read_time(text: object, where: str) -> datetime | None:
    """A snapshot's time (None when missing); a value that is there but not an RFC 3339 time with a
    zone is refused, naming where, rather than guessed at."""
    if text is None or text == "":
        return None
    value = parse_time(text)
    if value is None:
        raise InvalidSnapshot(
            f"{where}: {text!r} is not an RFC 3339 time with a zone (e.g. 2026-01-31T12:00:00Z)"
        )
    return value


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if type(value) is dict:  # what JSON decodes to; the Mapping check below is an order slower
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSnapshot(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if type(value) is list:
        return value
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSnapshot(f"{where} must be an array, got {type(value).__name__}")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidSnapshot(f"{where}: {value!r} is not an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidSnapshot(f"{where}: {value!r} is not an integer") from exc


def _strmap(value: object, where: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _obj(value, where).items()}


def _meta(item: Mapping[str, Any], kind: str) -> tuple[Mapping[str, Any], str]:
    meta = _obj(item.get("metadata"), f"{kind} metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidSnapshot(f"a {kind} has no metadata.name")
    return meta, name


def _quantities(value: object, where: str) -> dict[str, Decimal]:
    result: dict[str, Decimal] = {}
    for key, raw in _obj(value, where).items():
        try:
            result[str(key)] = parse_quantity(raw)
        except InvalidQuantity as exc:
            raise InvalidSnapshot(f"{where}[{key}]: {exc}") from exc
    return result


def _node(item: Mapping[str, Any]) -> Node:
    meta, name = _meta(item, "Node")
    where = f"node {name}"
    spec = _obj(item.get("spec"), f"{where} spec")
    status = _obj(item.get("status"), f"{where} status")
    allocatable = _quantities(status.get("capacity"), f"{where} status.capacity")
    allocatable.update(_quantities(status.get("allocatable"), f"{where} status.allocatable"))
    allocatable.setdefault("pods", DEFAULT_MAX_PODS)
    taints = tuple(
        Taint(
            key=str(t.get("key", "")),
            value=str(t.get("value", "") or ""),
            effect=str(t.get("effect", "")),
        )
        for t in (_obj(x, f"{where} taint") for x in _list(spec.get("taints"), f"{where} spec.taints"))
    )
    ready = True
    for condition in _list(status.get("conditions"), f"{where} status.conditions"):
        cond = _obj(condition, f"{where} condition")
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
    return Node(
        name=name,
        labels=_strmap(meta.get("labels"), f"{where} labels"),
        annotations=_strmap(meta.get("annotations"), f"{where} annotations"),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
        allocatable=allocatable,
        created=read_time(meta.get("creationTimestamp"), f"{where} creationTimestamp"),
        deleting=meta.get("deletionTimestamp") is not None,
        ready=ready,
        uid=str(meta.get("uid") or ""),
    )


def _requirements(value: object, where: str) -> tuple[Requirement, ...]:
    result = []
    for raw in _list(value, where):
        entry = _obj(raw, where)
        key = entry.get("key")
        operator = entry.get("operator")
        if not isinstance(key, str) or operator not in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"):
            raise InvalidSnapshot(f"{where}: bad requirement {dict(entry)!r}")
        values = tuple(str(v) for v in _list(entry.get("values"), f"{where} values"))
        result.append(Requirement(key=key, operator=str(operator), values=values))
    return tuple(result)


def label_selector(value: object, where: str) -> LabelSelector | None:
    """Parse a metav1.LabelSelector; JSON null (absent) → None, which selects nothing."""
    if value is None:
        return None
    raw = _obj(value, where)
    return LabelSelector(
        match_labels=tuple(sorted(_strmap(raw.get("matchLabels"), f"{where} matchLabels").items())),
        match_expressions=_requirements(raw.get("matchExpressions"), f"{where} matchExpressions"),
    )


def _pod_terms(value: object, where: str) -> tuple[PodAffinityTerm, ...]:
    terms = []
    for raw in _list(value, where):
        term = _obj(raw, where)
        terms.append(
            PodAffinityTerm(
                selector=label_selector(term.get("labelSelector"), f"{where} labelSelector"),
                namespaces=tuple(str(n) for n in _list(term.get("namespaces"), f"{where} namespaces")),
                all_namespaces=term.get("namespaceSelector") is not None,
                topology_key=str(term.get("topologyKey", "")),
            )
        )
    return tuple(terms)


def _container_requests(container: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    resources = _obj(container.get("resources"), f"{where} resources")
    # The API server defaults a missing request to the limit; hand-written snapshots may skip that.
    requests = _quantities(resources.get("limits"), f"{where} limits")
    requests.update(_quantities(resources.get("requests"), f"{where} requests"))
    return requests


def _add(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, Decimal(0)) + value


def _max(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for key, value in other.items():
        if value > into.get(key, Decimal(0)):
            into[key] = value


def pod_requests(spec: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    """Effective requests as the scheduler computes them.

    max(sum of app containers + restartable (sidecar) init containers, each init container plus the
    sidecars started before it) + pod overhead; pod-level ``spec.resources`` wins where set.
    """
    total: dict[str, Decimal] = {}
    for i, raw in enumerate(_list(spec.get("containers"), f"{where} containers")):
        _add(total, _container_requests(_obj(raw, where), f"{where} containers[{i}]"))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for i, raw in enumerate(_list(spec.get("initContainers"), f"{where} initContainers")):
        container = _obj(raw, where)
        requests = _container_requests(container, f"{where} initContainers[{i}]")
        if container.get("restartPolicy") == "Always":
            _add(sidecars, requests)
            _max(init_peak, sidecars)
        else:
            during = dict(sidecars)
            _add(during, requests)
            _max(init_peak, during)
    _add(total, sidecars)
    _max(total, init_peak)
    pod_level = _obj(spec.get("resources"), f"{where} resources")
    total.update(_quantities(pod_level.get("requests"), f"{where} resources.requests"))
    _add(total, _quantities(spec.get("overhead"), f"{where} overhead"))
    return {k: v for k, v in total.items() if v != 0}


def _pod(item: Mapping[str, Any]) -> Pod:
    meta, name = _meta(item, "Pod")
    namespace = str(meta.get("namespace") or "default")
    where = f"pod {namespace}/{name}"
    spec = _obj(item.get("spec"), f"{where} spec")
    status = _obj(item.get("status"), f"{where} status")
    affinity = _obj(spec.get("affinity"), f"{where} affinity")
    node_affinity = _obj(affinity.get("nodeAffinity"), f"{where} nodeAffinity")
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms: tuple[NodeSelectorTerm, ...] | None = None
    if required is not None:
        terms = tuple(
            NodeSelectorTerm(
                match_expressions=_requirements(t.get("matchExpressions"), f"{where} nodeAffinity"),
                match_fields=_requirements(t.get("matchFields"), f"{where} nodeAffinity"),
            )
            for t in (
                _obj(x, where)
                for x in _list(_obj(required, where).get("nodeSelectorTerms"), f"{where} nodeSelectorTerms")
            )
        )
    tolerations = tuple(
        Toleration(
            key=str(t.get("key", "") or ""),
            operator=str(t.get("operator", "") or "Equal"),
            value=str(t.get("value", "") or ""),
            effect=str(t.get("effect", "") or ""),
        )
        for t in (_obj(x, where) for x in _list(spec.get("tolerations"), f"{where} tolerations"))
    )
    owners = tuple(
        OwnerReference(
            kind=str(o.get("kind", "")), name=str(o.get("name", "")), controller=bool(o.get("controller"))
        )
        for o in (_obj(x, where) for x in _list(meta.get("ownerReferences"), f"{where} ownerReferences"))
    )
    local: list[str] = []
    claims = False
    for raw in _list(spec.get("volumes"), f"{where} volumes"):
        volume = _obj(raw, where)
        if "emptyDir" in volume or "hostPath" in volume:
            local.append(str(volume.get("name", "")))
        if "persistentVolumeClaim" in volume or "ephemeral" in volume:
            claims = True
    spread = tuple(
        SpreadConstraint(
            max_skew=_int(c.get("maxSkew", 1), f"{where} maxSkew"),
            topology_key=str(c.get("topologyKey", "")),
            selector=label_selector(c.get("labelSelector"), f"{where} topologySpreadConstraints"),
        )
        for c in (_obj(x, where) for x in _list(spec.get("topologySpreadConstraints"), f"{where} spread"))
        if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"
    )
    host_ports = []
    for raw in (*_list(spec.get("containers"), where), *_list(spec.get("initContainers"), where)):
        for port in _list(_obj(raw, where).get("ports"), f"{where} ports"):
            entry = _obj(port, f"{where} port")
            if entry.get("hostPort"):
                host_ports.append(
                    (
                        str(entry.get("protocol") or "TCP"),
                        _int(entry["hostPort"], f"{where} hostPort"),
                        str(entry.get("hostIP") or ""),
                    )
                )
    pod_affinity = _obj(affinity.get("podAffinity"), where)
    pod_anti = _obj(affinity.get("podAntiAffinity"), where)
    ready_since = None
    for raw in _list(status.get("conditions"), f"{where} status.conditions"):
        condition = _obj(raw, f"{where} condition")
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            # A Ready pod without a transition time is treated as Ready since it started.
            ready_since = read_time(condition.get("lastTransitionTime"), f"{where} Ready condition") or (
                read_time(status.get("startTime"), f"{where} startTime")
            )
    return Pod(
        namespace=namespace,
        name=name,
        node_name=spec.get("nodeName") or None,
        phase=str(status.get("phase", "Pending")),
        labels=_strmap(meta.get("labels"), f"{where} labels"),
        annotations=_strmap(meta.get("annotations"), f"{where} annotations"),
        requests=pod_requests(spec, where),
        node_selector=_strmap(spec.get("nodeSelector"), f"{where} nodeSelector"),
        required_node_terms=terms,
        tolerations=tolerations,
        owners=owners,
        local_volumes=tuple(local),
        has_claims=claims,
        created=read_time(meta.get("creationTimestamp"), f"{where} creationTimestamp"),
        started=read_time(status.get("startTime"), f"{where} startTime"),
        deleting=meta.get("deletionTimestamp") is not None,
        pod_affinity=_pod_terms(
            pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), f"{where} podAffinity"
        ),
        pod_anti_affinity=_pod_terms(
            pod_anti.get("requiredDuringSchedulingIgnoredDuringExecution"), f"{where} podAntiAffinity"
        ),
        spread=spread,
        host_ports=tuple(host_ports),
        uid=str(meta.get("uid") or ""),
        ready_since=ready_since,
    )


def _pdb(item: Mapping[str, Any]) -> PodDisruptionBudget:
    meta, name = _meta(item, "PodDisruptionBudget")
    namespace = str(meta.get("namespace") or "default")
    where = f"PodDisruptionBudget {namespace}/{name}"
    spec = _obj(item.get("spec"), f"{where} spec")
    status = _obj(item.get("status"), f"{where} status")
    allowed = status.get("disruptionsAllowed", 0)
    if not isinstance(allowed, int) or isinstance(allowed, bool):
        raise InvalidSnapshot(f"{where}: status.disruptionsAllowed {allowed!r} is not an integer")
    return PodDisruptionBudget(
        namespace=namespace,
        name=name,
        selector=label_selector(spec.get("selector"), f"{where} selector"),
        # A PDB the controller has not processed yet has no status: allow nothing until it has.
        disruptions_allowed=max(allowed, 0),
    )
