"""Operator settings: one typed model, read once from flags and RIGHTSIZER_* environment variables
(which the Helm chart sets from its values), then passed down explicitly. No globals.

pydantic-settings reads the environment (nested fields joined by ``__``) and merges the flags over
it, so a flag and its variable are validated by the same model and a bad one is refused by name."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from rightsizer.adapters.metrics.promql import parse_matchers
from rightsizer.adapters.metrics.series_shapes import LabelShape
from rightsizer.core.errors import RightsizerError

ENV_PREFIX = "RIGHTSIZER_"


class SettingsError(RightsizerError):
    """A setting has a value the operator cannot run with."""


def _comma_list(value: Any) -> Any:
    # Lists come from the environment (and the chart) as comma-separated text, not JSON.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field("http://prometheus-server.monitoring:9090", description="Prometheus base URL.")
    bearer_token_file: str | None = Field(None, description="File holding a bearer token (mounted Secret).")
    ca_file: str | None = Field(None, description="CA bundle that verifies Prometheus' TLS certificate.")
    insecure_skip_verify: bool = Field(False, description="Skip TLS verification (never in production).")
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    series_selector: str = Field(
        "",
        description='Label matchers every GPU query adds, e.g. job="dcgm-exporter",cluster="eu-1": '
        "keeps out other scrapes of the same GPUs.",
    )

    @field_validator("series_selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        parse_matchers(value)
        return value


class DcgmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: CommaList = Field(default_factory=list, description="Static exporter /metrics URLs.")
    service: str | None = Field(None, description="namespace/name of the dcgm-exporter Service to discover.")
    port: int = Field(9400, ge=1, le=65535)
    pod_labels: str = Field(
        "auto",
        description="Which series labels name a GPU's pod: auto (each series' shape), new "
        "(namespace/pod), old (pod_namespace/pod_name), exported (exported_namespace/exported_pod, a "
        "ServiceMonitor with honorLabels false) or namespace=LABEL,pod=LABEL,container=LABEL.",
    )
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    max_series_per_scrape: int = Field(
        200_000,
        ge=100,
        le=10_000_000,
        description="An exporter serving more series than this is refused (a label explosion).",
    )

    @field_validator("pod_labels")
    @classmethod
    def _shape(cls, value: str) -> str:
        return LabelShape.parse(value).name

    _endpoints = field_validator("endpoints", mode="before")(_comma_list)

    @property
    def label_shape(self) -> LabelShape:
        return LabelShape.parse(self.pod_labels)


class PricingDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field("USD", min_length=1, max_length=8)
    gpu_hour: Decimal = Field(Decimal("2.00"), ge=0, description="Price per GPU-hour when no pool matches.")
    cpu_core_hour: Decimal = Field(Decimal("0.03"), ge=0)
    energy_kwh: Decimal = Field(Decimal("0.12"), ge=0)
    pue: Decimal = Field(Decimal("1.3"), ge=1, le=3)
    gpu_watts: Decimal = Field(Decimal("300"), ge=0)


class ConsolidationSettings(BaseModel):
    """Bin-packing GPU nodes and scaling GPUNodePools; only pools that have a GPUNodePool are touched."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run consolidation passes on GPUNodePools.")
    interval_seconds: float = Field(60.0, ge=1, le=3600, description="Seconds between passes per pool.")
    drain_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Give a node up when evicted pods are not Running elsewhere by then.",
    )
    poll_seconds: float = Field(2.0, gt=0, le=60, description="How often a drain checks the replacements.")
    drain_backoff_seconds: float = Field(
        600.0,
        ge=0,
        le=86400,
        description="After a failed drain, leave the node alone this long (doubling per failure in a row).",
    )
    drain_backoff_cap_seconds: float = Field(
        7200.0, ge=0, le=86400, description="The longest a node is left alone after failed drains."
    )
    max_nodes_per_pass: int = Field(1, ge=1, le=100, description="Nodes removed per pool and pass.")
    drain_workers: int = Field(
        2, ge=1, le=32, description="Drains running at once, on their own threads (never kopf's workers)."
    )
    intent_lease_seconds: float = Field(
        120.0, ge=10, le=3600, description="How long a drain intent stays its process's without renewal."
    )
    scale_up_cooldown_seconds: float = Field(
        60.0, ge=0, le=3600, description="Wait this long after adding nodes before adding more."
    )
    removal_timeout_seconds: float = Field(
        900.0,
        ge=1,
        le=86400,
        description=(
            "A node still there this long after its removal was asked of the provider is reported stuck; "
            "its pool then drains and adds nothing until it is gone."
        ),
    )
    pool_selector: dict[str, str] = Field(
        default_factory=dict, description="Manage only GPUNodePools with these labels (empty: all)."
    )


class Settings(BaseSettings):
    """Everything the operator can be told. Field names map to RIGHTSIZER_<NAME> (nested with __)."""

    # Other RIGHTSIZER_* variables (the dev tooling's) name no field and are not read.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_ignore_empty=True, extra="forbid"
    )

    interval_seconds: float = Field(30.0, ge=1, le=3600, description="Seconds between passes per workload.")
    namespaces: CommaList = Field(default_factory=list, description="Namespaces to watch; empty = all.")
    dry_run: bool = Field(False, description="Decide and report, change nothing (every workload Recommend).")
    metrics_source: Literal["Prometheus", "DCGM"] = "Prometheus"
    max_metric_age_seconds: float | None = Field(
        None, gt=0, description="Older samples mean hold; default two intervals."
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of the operator's own /metrics.")
    metrics_address: str = Field("0.0.0.0", description="Address the /metrics endpoint binds to.")
    health_port: int = Field(8081, ge=0, le=65535, description="Port of /healthz (liveness, readiness).")
    peering_name: str = Field(
        "gpu-rightsizer", description="kopf peering: replicas sharing it never both act."
    )
    standalone: bool = Field(False, description="Run without peering (single replica, development).")
    peering_priority: int | None = Field(
        None, ge=0, description="Peering priority; default: random per process, so one replica leads."
    )
    api_connections: int = Field(
        32,
        ge=1,
        le=1000,
        description="Most connections kopf keeps open to the API server for requests; its watches "
        "come on top.",
    )
    record_decisions: str | None = Field(
        None,
        description="Append every replica decision's inputs and result to this JSON-lines file "
        "(replayable with `rightsizer backtest --input FILE --workload NS/NAME`).",
    )
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    dcgm: DcgmSettings = Field(default_factory=DcgmSettings)
    pricing: PricingDefaults = Field(default_factory=PricingDefaults)
    consolidation: ConsolidationSettings = Field(default_factory=ConsolidationSettings)

    _namespaces = field_validator("namespaces", mode="before")(_comma_list)

    @property
    def max_metric_age(self) -> float:
        return self.max_metric_age_seconds or 2 * self.interval_seconds

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags over the environment; no .env file or secrets directory is read behind the user's back.
        return init_settings, env_settings

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """The environment, with the flags given (nested sections as dicts; None means not given) over
        it. A bad value is refused naming its setting and its variable."""
        try:
            return cls(**_given(flags))
        except ValidationError as exc:
            problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
            raise SettingsError(f"invalid settings: {problems}") from exc


def _given(flags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flags.items():
        given = (_given(value) or None) if isinstance(value, dict) else value
        if given is not None:
            out[key] = given
    return out


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    path = [str(part) for part in loc]
    return f"{'.'.join(path)} ({ENV_PREFIX}{'__'.join(path).upper()}): {msg}"
