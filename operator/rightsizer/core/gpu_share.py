"""How much of a physical GPU a pod's GPU requests reserve: what its GPU cost is priced on.

A whole ``nvidia.com/gpu`` is one GPU, except on a node whose device plugin shares each GPU
(time-slicing or MPS: GPU feature discovery labels it ``nvidia.com/gpu.replicas``), where one unit is
one replica's share; ``nvidia.com/gpu.shared`` (the renamed shared resource) likewise. A MIG
instance ``nvidia.com/mig-<c>g.<mem>`` is its share of the parent GPU's compute slices, from the
catalog for the node's model, else from the profile name (A100/H100 have seven).

Where the share cannot be known (an unreadable replicas label, a profile name that says nothing),
the unit is priced as a whole GPU: cost is then overstated, never hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from rightsizer.core.gpu_catalog import find_gpu_model
from rightsizer.core.metrics_view import UsableMetrics

WHOLE_GPU = "nvidia.com/gpu"
SHARED_GPU = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
PRODUCT_LABEL = "nvidia.com/gpu.product"
# A100 and H100 (the GPUs MIG is mostly run on) split compute into seven slices.
DEFAULT_COMPUTE_SLICES = 7

_PROFILE = re.compile(r"^(?P<compute>[1-9]\d*)g\.")
ONE = Decimal(1)


def is_gpu_request(name: str) -> bool:
    return name in (WHOLE_GPU, SHARED_GPU) or name.startswith(MIG_PREFIX)


def gpu_share(requests: Mapping[str, Decimal], node_labels: Mapping[str, str]) -> Decimal:
    """Physical GPUs' worth reserved by these requests on a node with these labels."""
    total = Decimal(0)
    for name, amount in requests.items():
        if name in (WHOLE_GPU, SHARED_GPU):
            total += amount / _replicas(node_labels)
        elif name.startswith(MIG_PREFIX):
            total += amount * _slice(name.removeprefix(MIG_PREFIX), node_labels.get(PRODUCT_LABEL))
        elif name.endswith("/gpu"):  # other vendors' whole GPUs (amd.com/gpu, gpu.intel.com/...)
            total += amount
    return total


def _replicas(labels: Mapping[str, str]) -> Decimal:
    raw = labels.get(REPLICAS_LABEL, "1")
    return Decimal(int(raw)) if raw.isdigit() and int(raw) > 0 else ONE


def shares_a_gpu(requests: Mapping[str, Decimal], node_labels: Mapping[str, str]) -> bool:
    """The pod holds a time-sliced or MPS replica of a GPU. Its series, when it has any, carry the
    device's numbers, even where the exporter labels only one of the sharers (so no other pod's series
    names the same GPU)."""
    if requests.get(SHARED_GPU, Decimal(0)) > 0:
        return True
    if requests.get(WHOLE_GPU, Decimal(0)) <= 0 or REPLICAS_LABEL not in node_labels:
        return False
    raw = node_labels[REPLICAS_LABEL]
    # A replicas label that cannot be read may mean sharing: the pod's numbers are not trusted as its own.
    return not raw.isdigit() or int(raw) > 1


def single_mig_profile(requests: Sequence[Mapping[str, Decimal]]) -> str | None:
    """The MIG profile when every replica holds exactly one slice of it and nothing else."""
    names = {name for r in requests for name in r}
    if len(names) != 1 or not all(len(r) == 1 and sum(r.values()) == 1 for r in requests):
        return None
    (name,) = names
    return name.removeprefix(MIG_PREFIX) if name.startswith(MIG_PREFIX) else None


def _slice(profile: str, product: str | None) -> Decimal:
    model = find_gpu_model(product) if product else None
    known = model.mig_profile(profile) if model else None
    if known is not None:
        return _decimal(known.compute_fraction)
    match = _PROFILE.match(profile)
    if match is None:
        return ONE
    compute = int(match["compute"])
    return _decimal(Fraction(min(compute, DEFAULT_COMPUTE_SLICES), DEFAULT_COMPUTE_SLICES))


def _decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def used_gpu_share(metrics: UsableMetrics, shares: Mapping[str, Decimal]) -> Decimal | None:
    """GPUs' worth of work done: each pod's utilisation of what it holds, times its share. None when a
    pod's GPU is shared with other pods: its reading is the device's, so its own use is unknown."""
    if metrics.shared_pods:
        return None
    total = Decimal(0)
    for pod in metrics.per_pod:
        share = shares.get(pod.pod, Decimal(pod.gpus))
        total += Decimal(str(round(pod.percent, 6))) / 100 * share
    return total
