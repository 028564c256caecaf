"""An immutable view of the cluster the planner reasons about: nodes, pods and PDBs.

Only what placement and protection need is kept, already parsed (quantities as Decimals, selectors
as data), so the planner never touches raw dictionaries. Reading one from Kubernetes JSON is
:mod:`rightsizer.core.snapshot_parsing`; matching selectors and taints against it is
:mod:`rightsizer.core.matching`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from rightsizer.core.gpu_share import gpu_share, is_gpu_request

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
KARPENTER_NODEPOOL_LABEL = "karpenter.sh/nodepool"
# The hourly price of the node's instance type and capacity type, as Karpenter's kwok provider labels
# its nodes and NodeClaims (eks-node-viewer's convention); other providers may write it too.
INSTANCE_PRICE_LABEL = "eks-node-viewer/instance-price"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

Labels = Mapping[str, str]


def is_gpu_resource(name: str) -> bool:
    """True for resources that are GPUs or GPU slices (whole, time-sliced, MIG, other vendors)."""
    return is_gpu_request(name) or name.endswith("/gpu")


def is_extended_resource(name: str) -> bool:
    """Extended resources are vendor-prefixed (``vendor.io/thing``); hugepages are scalar too."""
    return ("/" in name and not name.startswith("kubernetes.io/")) or name.startswith("hugepages-")


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str  # "" with operator Exists tolerates every key
    operator: str  # Equal | Exists
    value: str
    effect: str  # "" tolerates every effect


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions/matchFields entry: In, NotIn, Exists, DoesNotExist (and Gt, Lt for nodes)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def keys(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.match_labels) | {r.key for r in self.match_expressions}


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """Terms are ORed; the requirements inside one term are ANDed. An empty term matches nothing."""

    match_expressions: tuple[Requirement, ...] = ()
    match_fields: tuple[Requirement, ...] = ()


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """A required (anti-)affinity term. ``all_namespaces`` is set when a namespaceSelector is given:
    namespace labels are not in the snapshot, so the planner assumes the widest scope."""

    selector: LabelSelector | None
    namespaces: tuple[str, ...]
    all_namespaces: bool
    topology_key: str


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    """A topologySpreadConstraint with whenUnsatisfiable=DoNotSchedule (ScheduleAnyway is a preference)."""

    max_skew: int
    topology_key: str
    selector: LabelSelector | None


@dataclass(frozen=True, slots=True)
class OwnerReference:
    kind: str
    name: str
    controller: bool


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Labels
    annotations: Labels
    taints: tuple[Taint, ...]
    unschedulable: bool
    allocatable: Mapping[str, Decimal]
    created: datetime | None
    deleting: bool = False
    ready: bool = True
    uid: str = ""
    """Tells apart two nodes of one name (kwok and some providers reuse names)."""

    def gpus(self) -> Decimal:
        return sum((v for k, v in self.allocatable.items() if is_gpu_resource(k)), Decimal(0))

    def physical_gpus(self) -> Decimal:
        """What the node is priced on: a MIG slice or a time-sliced replica counts as its share."""
        return gpu_share(self.allocatable, self.labels)

    @property
    def gpu_model(self) -> str | None:
        return self.labels.get(GPU_PRODUCT_LABEL)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    node_name: str | None
    phase: str
    labels: Labels
    annotations: Labels
    requests: Mapping[str, Decimal]
    node_selector: Labels
    required_node_terms: tuple[NodeSelectorTerm, ...] | None  # None: no required node affinity
    tolerations: tuple[Toleration, ...]
    owners: tuple[OwnerReference, ...]
    local_volumes: tuple[str, ...]  # emptyDir / hostPath volume names
    has_claims: bool  # mounts a PersistentVolumeClaim (zonal storage pins the pod to its zone)
    created: datetime | None
    started: datetime | None
    deleting: bool = False
    pod_affinity: tuple[PodAffinityTerm, ...] = ()
    pod_anti_affinity: tuple[PodAffinityTerm, ...] = ()
    spread: tuple[SpreadConstraint, ...] = ()
    host_ports: tuple[tuple[str, int, str], ...] = ()  # (protocol, hostPort, hostIP)
    uid: str = ""  # tells this pod from a later one of the same name (StatefulSets reuse names)
    ready_since: datetime | None = None  # when its Ready condition last became True; None: not Ready
    # namespace/name, made once: planning looks pods up by it hundreds of thousands of times.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")

    @property
    def controller(self) -> OwnerReference | None:
        return next((o for o in self.owners if o.controller), None)

    @property
    def is_mirror(self) -> bool:
        return MIRROR_ANNOTATION in self.annotations

    @property
    def is_daemon(self) -> bool:
        owner = self.controller
        return owner is not None and owner.kind == "DaemonSet"

    @property
    def terminal(self) -> bool:
        """Succeeded/Failed pods hold no capacity."""
        return self.phase in ("Succeeded", "Failed")

    def gpus(self) -> Decimal:
        return sum((v for k, v in self.requests.items() if is_gpu_resource(k)), Decimal(0))


@dataclass(frozen=True, slots=True)
class PodDisruptionBudget:
    namespace: str
    name: str
    selector: LabelSelector | None  # None matches no pod
    disruptions_allowed: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    pdbs: tuple[PodDisruptionBudget, ...] = ()
