"""Building blocks shared by the v1alpha1 resources.

Every rule spanning several fields is declared once, as a :class:`Rule`: its CEL expression
goes into the CRD (so the API server refuses bad objects with a field-naming message) and its
Python twin runs when the operator parses an object (so tests and `rightsizer plan` files get
the same answer without a cluster). A unit test evaluates both on the same inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from rightsizer.api.durations import DURATION_EXAMPLES, DURATION_PATTERN, format_duration, parse_duration

GROUP = "rightsizer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

RuleReason = Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden", "FieldValueDuplicate"]


def cel_string(text: str) -> str:
    """``text`` as a single-quoted CEL string literal (CEL interprets backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Rule:
    """A validation rule: CEL for the API server, ``check`` for Python, one message for both.

    ``message`` names the offending field by its full wire path (``spec.minReplicas``) because
    for a rule spanning several fields the API server reports the path of the object holding
    the rule; ``field_path`` (relative, ``.minReplicas``) moves the error onto the field a user
    has to change.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    reason: RuleReason | None = None

    def as_cel(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        if self.reason:
            rule["reason"] = self.reason
        return rule


def _wire_config(extra: Literal["forbid", "ignore"]) -> ConfigDict:
    # camelCase on the wire, snake_case in Python; dumps use wire names unless told otherwise.
    return ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        extra=extra,
    )


class WireModel(BaseModel):
    """Base of every API model: an immutable value that enforces its own :class:`Rule` s."""

    model_config = _wire_config("ignore")

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = [rule.message for rule in type(self).rules if not rule.check(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if cls.rules:
            target = handler.resolve_ref_schema(json_schema)
            target["x-kubernetes-validations"] = [rule.as_cel() for rule in cls.rules]
        return json_schema

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict to send to the API server: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SpecModel(WireModel):
    """Users write these: unknown fields are errors, so a typo never silently does nothing."""

    model_config = _wire_config("forbid")


class StatusModel(WireModel):
    """The operator writes these; fields written by a newer operator are ignored."""

    model_config = _wire_config("ignore")


# --- scalar types -------------------------------------------------------------------------------


def decimal_to_number(value: Decimal) -> int | float:
    # The CRD types money and percentages as JSON numbers; integral values stay integers.
    return int(value) if value == value.to_integral_value() else float(value)


Number = Annotated[Decimal, PlainSerializer(decimal_to_number, return_type=int | float, when_used="json")]
"""An exact Decimal in Python, a JSON number on the wire (prices, percentages, watts)."""

Money = Annotated[Number, Field(ge=0)]

MAX_PRICE = Decimal(10_000_000)
Price = Annotated[Number, Field(ge=0, le=MAX_PRICE)]
"""An amount of money per hour (or per kWh) in the object's currency. The bound leaves room for
currencies with large units (a GPU node-hour is over a million in some) and refuses the absurd, e.g.
a price pasted with the wrong exponent, which would turn every cost figure into noise."""

MAX_WATTS = Decimal(10_000)
Watts = Annotated[Number, Field(ge=0, le=MAX_WATTS)]
"""Power of one GPU in watts; the largest GPU modules draw a few kW, nothing draws 10 kW."""


def _validate_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"must be a duration string {DURATION_EXAMPLES}")


DURATION_MESSAGE = f"must be a duration {DURATION_EXAMPLES}"

Duration = Annotated[
    timedelta,
    PlainValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                {"rule": f"self.matches({cel_string(DURATION_PATTERN)})", "message": DURATION_MESSAGE}
            ],
        }
    ),
]
"""A ``timedelta`` in Python, a string such as ``"1h30m"`` on the wire."""


@dataclass(frozen=True)
class Matches:
    """Annotation: the string must match ``pattern``; the API server and Python say ``message``.

    The API server prints ``<field>: Invalid value: "string": <message>``, which reads better
    than an OpenAPI ``pattern`` error that shows the regular expression to the user.
    """

    pattern: str
    message: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        compiled = re.compile(self.pattern)
        message = self.message

        def check(value: str) -> str:
            if not compiled.match(value):
                raise ValueError(f"{value!r} {message}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        rules = json_schema.setdefault("x-kubernetes-validations", [])
        rules.append({"rule": f"self.matches({cel_string(self.pattern)})", "message": self.message})
        return json_schema


Currency = Annotated[
    str,
    Field(max_length=3),
    Matches(r"^[A-Z]{3}$", "must be a three-letter ISO 4217 currency code such as USD or EUR"),
]

# Kubernetes quantities ("64", "512Gi", 8): the grammar of apimachinery's resource.Quantity.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _validate_quantity(value: object) -> int | str:
    # Kept as written (8 or "512Gi"), so an object read back equals the object applied.
    if isinstance(value, bool) or not isinstance(value, int | str) or not _QUANTITY.match(str(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 64, 500m or 512Gi")
    return value


Quantity = Annotated[
    int | str,
    PlainValidator(_validate_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes quantity as written; ``rightsizer.core.quantity.parse_quantity`` reads it."""

DNS_SUBDOMAIN = Matches(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "must be a lower-case DNS subdomain name such as my-app",
)

DNS_LABEL = Matches(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "must be a lower-case DNS label such as my-namespace")

# --- conditions ---------------------------------------------------------------------------------


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of the object's state, in the shape of the standard Kubernetes condition."""

    type: str = Field(max_length=316, description="Aspect this condition describes, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="What happened, for a person.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from."
    )


CONDITIONS_LIST: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


# --- objects ------------------------------------------------------------------------------------


class ObjectMeta(StatusModel):
    """The parts of Kubernetes object metadata the operator reads."""

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: Literal["integer", "number", "string", "boolean", "date"]
    json_path: str
    description: str

    def as_crd(self) -> dict[str, str]:
        return {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")


@dataclass(frozen=True)
class ResourceInfo:
    """What the CRD generator needs besides the schema: names, scope and printer columns."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("rightsizer",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


class InvalidResource(ValueError):
    """A custom resource that does not parse; the message names the object and each bad field."""

    def __init__(self, kind: str, obj: Mapping[str, Any], error: ValidationError) -> None:
        meta = obj.get("metadata") or {}
        where = "/".join(str(p) for p in (meta.get("namespace"), meta.get("name")) if p) or "<unnamed>"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<object>'}: {err['msg']}" for err in error.errors()
        )
        super().__init__(f"{kind} {where} is invalid: {problems}; fix the object and it is read again")
        self.kind = kind
        self.problems = problems


class ApiObject(WireModel):
    """A whole custom resource as read from the API server."""

    resource: ClassVar[ResourceInfo]

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> Self:
        """Parse an object from the API server (or a file); raise :class:`InvalidResource`."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise InvalidResource(cls.resource.kind, obj, exc) from exc
