"""Which labels of a GPU series name the pod holding the GPU, and which metric names mean what.

Real set-ups write the same GPU in several shapes:
- dcgm-exporter 2.x+ writes ``namespace`` / ``pod`` / ``container``; 1.x and ``--use-old-namespace``
  write ``pod_namespace`` / ``pod_name`` / ``container_name``;
- scraped through a ServiceMonitor with ``honorLabels: false`` (the exporter chart's default),
  Prometheus renames the series' own pod labels to ``exported_namespace`` / ``exported_pod`` /
  ``exported_container``, and the plain ``namespace`` / ``pod`` then name the exporter's own pod;
- with ``honorLabels: true`` a series of an unallocated GPU carries the exporter pod's labels.

`LabelShape` is the ``podLabels`` setting: ``auto`` recognises each series' shape, the others read
one fixed set of names. A series naming the exporter's own pod is unattributed, never a workload's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from rightsizer.adapters.metrics.base import (
    FB_FREE,
    FB_USED,
    GPU_UTIL,
    NEW_LABELS,
    OLD_LABELS,
    POWER_USAGE,
    PodKey,
    PodLabels,
)
from rightsizer.core.errors import RightsizerError

EXPORTED_LABELS = PodLabels("exported_namespace", "exported_pod", "exported_container")
FIXED_SHAPES: Mapping[str, PodLabels] = {"new": NEW_LABELS, "old": OLD_LABELS, "exported": EXPORTED_LABELS}
SHAPE_NAMES = ("auto", *FIXED_SHAPES)
# Most specific first: an exported_* pair means the plain labels are the exporter's.
_AUTO_ORDER = (("exported", EXPORTED_LABELS), ("old", OLD_LABELS), ("new", NEW_LABELS))

# dcgm-exporter's 1.x-compatible names (etc/1.x-compatibility-metrics.csv) for the fields we read.
_OLD_NAMES = {
    "dcgm_gpu_utilization": GPU_UTIL,
    "dcgm_fb_used": FB_USED,
    "dcgm_fb_free": FB_FREE,
    "dcgm_power_usage": POWER_USAGE,
}

UNATTRIBUTED = "none"
EXPORTER = "exporter"


class InvalidPodLabels(RightsizerError, ValueError):
    """The podLabels setting is neither a known shape nor a namespace/pod/container mapping."""

    def __init__(self, text: str) -> None:
        super().__init__(
            f"pod labels {text!r}: expected one of {', '.join(SHAPE_NAMES)} or "
            "namespace=LABEL,pod=LABEL,container=LABEL"
        )


@dataclass(frozen=True)
class LabelShape:
    """``fixed`` None means auto: each series is read by the shape its labels show."""

    fixed: PodLabels | None = None
    name: str = "auto"

    @classmethod
    def parse(cls, text: str) -> LabelShape:
        """``auto``, ``new``, ``old``, ``exported`` or ``namespace=a,pod=b,container=c``."""
        word = text.strip()
        if word == "auto":
            return cls()
        if word in FIXED_SHAPES:
            return cls(FIXED_SHAPES[word], word)
        pairs = dict(part.partition("=")[::2] for part in word.split(",") if part.strip())
        pairs = {key.strip(): value.strip() for key, value in pairs.items()}
        if (
            set(pairs) - {"namespace", "pod", "container"}
            or not pairs.get("namespace")
            or not pairs.get("pod")
        ):
            raise InvalidPodLabels(text)
        labels = PodLabels(pairs["namespace"], pairs["pod"], pairs.get("container") or "container")
        return cls(labels, f"namespace={labels.namespace},pod={labels.pod},container={labels.container}")

    def owner(
        self, labels: Mapping[str, str], is_exporter: Callable[[PodKey], bool] = lambda key: False
    ) -> tuple[PodKey | None, str]:
        """The pod this series belongs to and the shape it was read by; (None, why) when none."""
        if self.fixed is not None:
            found = _pair(labels, self.fixed)
            return (found, self.name) if found is not None else (None, UNATTRIBUTED)
        for shape, names in _AUTO_ORDER:
            found = _pair(labels, names)
            if found is None:
                continue
            if shape == "new" and is_exporter(found):
                return None, EXPORTER
            return found, shape
        return None, UNATTRIBUTED


AUTO = LabelShape()


def exporter_pods(series_labels: Iterable[Mapping[str, str]]) -> set[PodKey]:
    """The exporters themselves, whose target labels Prometheus added as plain namespace/pod: on a
    series that also names a pod in another shape (exported_*, or an old exporter's pod_name), and on
    every series of a scrape job that has such series, since the plain labels of a job are all its
    targets'. So an exporter on a node where no GPU is allocated, whose own series name no other
    pod, is known too. (Exporter text without a ``job`` label is judged series by series.)"""
    items = list(series_labels)
    jobs: set[str] = set()
    found: set[PodKey] = set()
    for labels in items:
        plain = _pair(labels, NEW_LABELS)
        if _pair(labels, EXPORTED_LABELS) is not None or _pair(labels, OLD_LABELS) is not None:
            if "job" in labels:
                jobs.add(labels["job"])
            if plain is not None:
                found.add(plain)
    for labels in items:
        if labels.get("job") in jobs and (plain := _pair(labels, NEW_LABELS)) is not None:
            found.add(plain)
    return found


def canonical_name(name: str) -> str:
    """``dcgm_gpu_utilization`` → ``DCGM_FI_DEV_GPU_UTIL``; lower-case DCGM field names upper-cased."""
    if name in _OLD_NAMES:
        return _OLD_NAMES[name]
    upper = name.upper()
    return upper if upper.startswith("DCGM_FI_") else name


def spellings(name: str) -> tuple[str, ...]:
    """Every name a series of this field may carry, for a ``__name__=~`` matcher."""
    canonical = canonical_name(name)
    old = [alias for alias, target in _OLD_NAMES.items() if target == canonical]
    return tuple(dict.fromkeys([canonical, canonical.lower(), *old]))


def _pair(labels: Mapping[str, str], names: PodLabels) -> PodKey | None:
    namespace, pod = labels.get(names.namespace, ""), labels.get(names.pod, "")
    return (namespace, pod) if namespace and pod else None
