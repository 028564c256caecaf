"""The fake exporter's scenario rules: their model, parsing and what a rule says a pod's GPU does.

The format is documented in scenario.py. Pure: `now` is a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rightsizer.adapters.metrics.exposition import METRIC_NAME
from rightsizer.core.errors import RightsizerError
from rightsizer.devcluster.gpu_devices import GpuPod

SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"
SCENARIO_KEY = "scenario.yaml"

# Finite and >= 0; strict, so `true` or "12" in the YAML is refused rather than read as a number.
AppValue = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class ScenarioError(RightsizerError, ValueError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(
            f"invalid fake DCGM scenario in {source}: {reason}. Expected 'rules:' with entries such as "
            "{podPrefix: web-, util: 73}, {selector: {app: web}, series: [[0, 10], [120, 90]]} or "
            "{podPrefix: train-, gpuUtil: [30, 0, 0, 0]} or "
            "{selector: {app: chat}, appMetrics: {'vllm:num_requests_waiting': 12}}"
        )
        self.source = source
        self.reason = reason


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    namespace: str | None = None
    pod_prefix: str | None = Field(default=None, alias="podPrefix")
    selector: dict[str, str] | None = None
    util: float | None = Field(default=None, ge=0, le=100)
    series: tuple[tuple[float, float], ...] | None = None
    gpu_util: tuple[float, ...] | None = Field(default=None, alias="gpuUtil")
    start: datetime | None = None
    memory_used_mib: int | None = Field(default=None, ge=0, alias="memoryUsedMiB")
    app_metrics: dict[str, AppValue] | None = Field(default=None, alias="appMetrics")

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("series")
    @classmethod
    def _series_ordered(
        cls, value: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("series needs at least one [seconds, util] point")
        previous = -math.inf
        for seconds, util in value:
            if seconds < 0 or seconds <= previous:
                raise ValueError("series seconds must be >= 0 and strictly increasing")
            if not 0 <= util <= 100:
                raise ValueError(f"series util {util} is outside 0..100")
            previous = seconds
        return value

    @field_validator("gpu_util")
    @classmethod
    def _gpu_util_percent(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("gpuUtil needs at least one percent (GPU 0 first)")
        for index, util in enumerate(value):
            if not 0 <= util <= 100:
                raise ValueError(f"gpuUtil[{index}] = {util} is outside 0..100")
        return value

    @field_validator("app_metrics")
    @classmethod
    def _app_metric_names(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("appMetrics needs at least one {metric name: value}")
        for name in value:
            if not METRIC_NAME.fullmatch(name):
                raise ValueError(
                    f"appMetrics name {name!r} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
                )
            # The exporter writes these itself: a second family of the same name breaks the scrape.
            if name.lower().startswith("dcgm_"):
                raise ValueError(f"appMetrics name {name!r} is one of the exporter's own DCGM names")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> Rule:
        given = [v for v in (self.util, self.series, self.gpu_util) if v is not None]
        if len(given) > 1 and self.gpu_util is not None:
            raise ValueError(
                "gpuUtil (a percent per GPU) cannot be combined with util or series: "
                "give exactly one of util or series or gpuUtil"
            )
        if len(given) > 1:
            raise ValueError("give exactly one of util or series or gpuUtil")
        if not given and self.app_metrics is None:
            raise ValueError("give exactly one of util or series or gpuUtil, or appMetrics, or both")
        if not given and self.memory_used_mib is not None:
            raise ValueError("memoryUsedMiB goes with the GPU's util, series or gpuUtil: give one of them")
        return self

    @property
    def sets_util(self) -> bool:
        """Whether the rule gives a utilisation shape (a rule may give only appMetrics)."""
        return self.util is not None or self.series is not None or self.gpu_util is not None

    def matches(self, pod_name: str, pod_labels: Mapping[str, str]) -> bool:
        if self.pod_prefix is not None and not pod_name.startswith(self.pod_prefix):
            return False
        return all(pod_labels.get(k) == v for k, v in (self.selector or {}).items())

    def util_at(self, start: datetime, now: datetime, gpu: int = 0) -> float:
        """Constant util, the series point in force `now - start` seconds in (the first before it), or
        the pod's GPU `gpu`'s own percent."""
        if self.gpu_util is not None:
            return float(self.gpu_util[gpu]) if gpu < len(self.gpu_util) else 0.0
        if self.series is None:
            return float(self.util or 0.0)
        elapsed = (now - start).total_seconds()
        current = self.series[0][1]
        for seconds, util in self.series:
            if seconds > elapsed:
                break
            current = util
        return float(current)

    def identity(self) -> str:
        # The start belongs to the utilisation shape: new app gauge values do not restart a series.
        return self.model_dump_json(by_alias=True, exclude={"app_metrics"})


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: tuple[Rule, ...] = ()


def load_scenario(text: str, source: str, namespace: str | None = None) -> Scenario:
    """Parse scenario YAML. With `namespace` (a ConfigMap's), rules may not name another namespace."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ScenarioError(source, f"not YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, "the document must be a mapping with a 'rules' list")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}" for err in exc.errors()
        )
        raise ScenarioError(source, problems) from exc
    for index, rule in enumerate(scenario.rules):
        if namespace is None and not rule.namespace:
            raise ScenarioError(source, f"rules.{index}: a rule in a scenario file needs 'namespace'")
        if namespace is not None and rule.namespace not in (None, namespace):
            raise ScenarioError(
                source,
                f"rules.{index}: namespace {rule.namespace!r} differs from the ConfigMap's {namespace!r}",
            )
    return scenario


@dataclass(frozen=True)
class ActiveRule:
    """A rule bound to its namespace and its resolved start time."""

    namespace: str
    rule: Rule
    start: datetime


def pod_activity(
    pod: GpuPod, rules: Sequence[ActiveRule], now: datetime, gpu: int = 0
) -> tuple[float, int | None]:
    """(util %, memory MiB or None) of the pod's GPU `gpu`: the last matching rule that gives a
    utilisation shape, then the annotation."""
    util, memory = 0.0, None
    for active in _matching(pod, rules):
        if active.rule.sets_util:
            util, memory = active.rule.util_at(active.start, now, gpu), active.rule.memory_used_mib
    if pod.util_override is not None:
        util = pod.util_override
    return util, memory


def pod_app_metrics(pod: GpuPod, rules: Sequence[ActiveRule]) -> dict[str, float]:
    """The pod's application gauges: each metric from the last matching rule that names it."""
    metrics: dict[str, float] = {}
    for active in _matching(pod, rules):
        metrics.update(active.rule.app_metrics or {})
    return metrics


def _matching(pod: GpuPod, rules: Sequence[ActiveRule]) -> list[ActiveRule]:
    return [a for a in rules if a.namespace == pod.namespace and a.rule.matches(pod.name, pod.labels)]
