"""The fake exporter's scenario rules: their model, parsing and what a rule says a pod's GPU does.

The format is documented in scenario.py. Pure: `now` is a parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rightsizer.core.errors import RightsizerError
from rightsizer.devcluster.gpu_devices import GpuPod

SCENARIO_LABEL = "rightsizer.io/fake-dcgm-scenario"
SCENARIO_KEY = "scenario.yaml"


class ScenarioError(RightsizerError, ValueError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(
            f"invalid fake DCGM scenario in {source}: {reason}. Expected 'rules:' with entries such as "
            "{podPrefix: web-, util: 73}, {selector: {app: web}, series: [[0, 10], [120, 90]]} or "
            "{podPrefix: train-, gpuUtil: [30, 0, 0, 0]}"
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

    @model_validator(mode="after")
    def _one_shape(self) -> Rule:
        given = [v for v in (self.util, self.series, self.gpu_util) if v is not None]
        if len(given) == 1:
            return self
        if self.gpu_util is not None:
            raise ValueError(
                "gpuUtil (a percent per GPU) cannot be combined with util or series: "
                "give exactly one of util or series or gpuUtil"
            )
        raise ValueError("give exactly one of util or series or gpuUtil")

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
        return self.model_dump_json(by_alias=True)


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
    """(util %, memory MiB or None) of the pod's GPU `gpu`: the last matching rule, then the
    annotation."""
    util, memory = 0.0, None
    for active in rules:
        if active.namespace == pod.namespace and active.rule.matches(pod.name, pod.labels):
            util, memory = active.rule.util_at(active.start, now, gpu), active.rule.memory_used_mib
    if pod.util_override is not None:
        util = pod.util_override
    return util, memory
