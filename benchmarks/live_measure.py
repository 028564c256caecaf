"""The live benchmark's arithmetic, free of I/O: API requests from a kube-apiserver audit log, passes
found in them, histogram quantiles from /metrics text, counter deltas, and the report table.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rightsizer.adapters.metrics.exposition import Exposition

RequestKind = tuple[str, str]  # (verb, resource), e.g. ("get", "deployments/scale")

# What marks one workload's reconciliation: it reads its target (a Deployment) once, first.
PASS_MARKER: RequestKind = ("get", "deployments")


@dataclass(frozen=True)
class ApiRequest:
    audit_id: str
    received: datetime
    completed: datetime | None  # None while a watch is still open
    verb: str
    resource: str
    code: int | None
    target: str = ""  # namespace/name of the object, when the request names one

    @property
    def kind(self) -> RequestKind:
        return (self.verb, self.resource)


def _time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def resource_of(event: Mapping[str, object]) -> str:
    """`pods`, `deployments/scale`, `gpuworkloads.rightsizer.io/status`; the path for discovery calls."""
    ref = event.get("objectRef")
    if not isinstance(ref, Mapping):
        return str(event.get("requestURI", "")).split("?", 1)[0]
    resource = str(ref.get("resource", ""))
    group = str(ref.get("apiGroup", "") or "")
    if group and group not in ("apps", "autoscaling", "policy", "coordination.k8s.io", "events.k8s.io"):
        resource = f"{resource}.{group}"
    sub = ref.get("subresource")
    return f"{resource}/{sub}" if sub else resource


def parse_audit(lines: Iterable[str], user: str) -> list[ApiRequest]:
    """The requests `user` made, one per audit ID, in the order they were received.

    A watch is logged when its response starts and again when it ends; any other request once
    (the RequestReceived stage is not logged). Lines that are not JSON audit events are skipped:
    the log may end in a line still being written."""
    by_id: dict[str, ApiRequest] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("kind") != "Event":
            continue
        if (event.get("user") or {}).get("username") != user:
            continue
        audit_id = str(event.get("auditID"))
        stage = event.get("stage")
        completed = _time(event["stageTimestamp"]) if stage == "ResponseComplete" else None
        known = by_id.get(audit_id)
        if known is not None:
            if completed is not None:
                by_id[audit_id] = ApiRequest(
                    known.audit_id,
                    known.received,
                    completed,
                    known.verb,
                    known.resource,
                    known.code,
                    known.target,
                )
            continue
        status = event.get("responseStatus") or {}
        ref = event.get("objectRef") or {}
        by_id[audit_id] = ApiRequest(
            audit_id=audit_id,
            received=_time(event["requestReceivedTimestamp"]),
            completed=completed,
            verb=str(event.get("verb", "")),
            resource=resource_of(event),
            code=int(status["code"]) if "code" in status else None,
            target=f"{ref.get('namespace', '')}/{ref['name']}" if ref.get("name") else "",
        )
    return sorted(by_id.values(), key=lambda r: r.received)


@dataclass(frozen=True)
class Pass:
    """One reconciliation of every workload, as the API server saw it."""

    start: datetime  # the first /scale read
    end: datetime  # the last request of the pass completed
    requests: Counter[RequestKind] = field(default_factory=Counter)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def find_passes(
    requests: Sequence[ApiRequest], workloads: int, interval: float, marker: RequestKind = PASS_MARKER
) -> list[Pass]:
    """Split the request log into passes: every `workloads` consecutive /scale reads are one pass
    (each reconciliation reads its target once). A pass's requests are those received from its first
    /scale read until the next pass starts (the last pass: one interval); it ends when the last of
    them, watches aside, has been answered."""
    markers = [r for r in requests if r.kind == marker]
    starts = [markers[i].received for i in range(0, len(markers) - workloads + 1, workloads)]
    passes = []
    for n, start in enumerate(starts):
        last_mark = markers[n * workloads + workloads - 1].received
        until = starts[n + 1] if n + 1 < len(starts) else None
        mine = [
            r
            for r in requests
            if r.received >= start
            and (r.received < until if until else (r.received - start).total_seconds() < interval)
        ]
        end = max([last_mark, *(r.completed for r in mine if r.completed and r.verb != "watch")])
        passes.append(Pass(start, end, Counter(r.kind for r in mine)))
    return passes


def reconcile_gaps(requests: Sequence[ApiRequest], marker: RequestKind = PASS_MARKER) -> list[float]:
    """Seconds between consecutive reconciliations of the same workload (its target reads): about
    the interval when the operator keeps up, longer when passes fall behind."""
    last: dict[str, datetime] = {}
    gaps: list[float] = []
    for r in requests:
        if r.kind != marker or not r.target:
            continue
        if r.target in last:
            gaps.append((r.received - last[r.target]).total_seconds())
        last[r.target] = r.received
    return gaps


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile of raw values (nearest rank); NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def per_pass(passes: Sequence[Pass]) -> dict[RequestKind, float]:
    """Mean requests per pass, by kind."""
    if not passes:
        return {}
    total: Counter[RequestKind] = Counter()
    for p in passes:
        total.update(p.requests)
    return {kind: count / len(passes) for kind, count in sorted(total.items())}


def watched_kinds(requests: Iterable[ApiRequest]) -> list[str]:
    """The resources the operator keeps a watch on (each one an index: no list per workload)."""
    return sorted({r.resource for r in requests if r.verb == "watch"})


def list_per_workload_baseline(ours: Mapping[RequestKind, float], workloads: int, kinds: int) -> float:
    """Requests per pass of the same loop reading each indexed kind with a list per workload."""
    reads_and_writes = sum(n for (verb, _), n in ours.items() if verb != "watch")
    return reads_and_writes + workloads * kinds


# -- /metrics arithmetic ---------------------------------------------------------------------------


def value(expo: Exposition, name: str, **labels: str) -> float:
    """Sum of the series of `name` whose labels include `labels` (0 when there is none)."""
    return sum(
        s.value
        for s in expo.series
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def buckets(expo: Exposition, histogram: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram, in bound order."""
    out = [
        (math.inf if s.labels["le"] == "+Inf" else float(s.labels["le"]), s.value)
        for s in expo.series
        if s.name == f"{histogram}_bucket"
    ]
    return sorted(out)


def bucket_delta(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The histogram of what was observed between two scrapes."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket (what
    Prometheus' histogram_quantile does). NaN when it is empty; the highest finite bound when the
    quantile falls in the +Inf bucket."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} outside [0, 1]")
    if not cumulative or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def at_or_before(samples: Sequence[tuple[float, float]], t: float) -> float:
    """The value of a sampled counter at time t: the last sample taken at or before t."""
    earlier = [v for ts, v in samples if ts <= t]
    if not earlier:
        raise ValueError(f"no sample at or before {t}")
    return earlier[-1]


def deltas(samples: Sequence[tuple[float, float]], boundaries: Sequence[float]) -> list[float]:
    """Increase of a sampled counter between consecutive boundaries."""
    values = [at_or_before(samples, t) for t in boundaries]
    return [b - a for a, b in itertools.pairwise(values)]


def counter_pass_spans(samples: Sequence[tuple[float, float]], workloads: int) -> list[float]:
    """Pass durations from a sampled reconciliation counter: pass k runs from the last sample still
    at k x workloads to the first sample at (k + 1) x workloads (as precise as the sampling)."""
    spans = []
    for k in itertools.count():
        ends = [t for t, v in samples if v >= (k + 1) * workloads]
        if not ends:
            break
        starts = [t for t, v in samples if v <= k * workloads and t <= ends[0]]
        if starts:
            spans.append(ends[0] - starts[-1])
    return spans


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


# -- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""


def table(rows: Sequence[Row]) -> str:
    header = Row("", "rightsizer", "baseline", "ratio", "target")
    cells = [header, *rows]
    widths = [max(len(getattr(r, f)) for r in cells) for f in ("label", "ours", "baseline", "ratio")]
    lines = []
    for r in cells:
        lines.append(
            f"{r.label:<{widths[0]}}  {r.ours:>{widths[1]}}  {r.baseline:>{widths[2]}}  "
            f"{r.ratio:>{widths[3]}}  {r.target}".rstrip()
        )
    return "\n".join(lines)


def fmt(number: float, places: int = 1) -> str:
    if math.isnan(number):
        return "n/a"
    return f"{number:,.{places}f}"
