"""Typed errors of the pure core. Each names the bad input and what to do about it."""

from __future__ import annotations


class RightsizerError(Exception):
    """Base of every error the operator raises on purpose."""


class InvalidQuantity(RightsizerError, ValueError):
    def __init__(self, text: object) -> None:
        super().__init__(
            f"invalid Kubernetes quantity {text!r}: expected a number with an optional suffix "
            "such as 500m, 2, 16Gi or 1e3"
        )
        self.text = text


class InvalidSnapshot(RightsizerError, ValueError):
    """The cluster snapshot (e.g. a `kubectl get -o json` file) cannot be read."""


class InvalidPolicy(RightsizerError, ValueError):
    """A scaling, idle or pricing policy is self-contradictory (e.g. minReplicas > maxReplicas)."""

    def __init__(self, field: str, problem: str, remedy: str) -> None:
        super().__init__(f"invalid {field}: {problem}; {remedy}")
        self.field = field
        self.problem = problem
        self.remedy = remedy


class InvalidPool(RightsizerError, ValueError):
    """A GPUNodePool cannot be read; the message names the field and the expected form."""


class InvalidSchedule(RightsizerError, ValueError):
    def __init__(self, expression: str, problem: str) -> None:
        super().__init__(
            f"invalid cron schedule {expression!r}: {problem}; expected five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
        )
        self.expression = expression
        self.problem = problem


class MetricsUnavailable(RightsizerError):
    """A metrics source could not answer; decisions hold until it can."""

    def __init__(self, source: str, problem: str, remedy: str) -> None:
        super().__init__(f"{source}: {problem}; {remedy}")
        self.source = source
        self.problem = problem
        self.remedy = remedy


class ExpositionParseError(RightsizerError, ValueError):
    """A /metrics body that is not valid Prometheus text exposition."""

    def __init__(self, line_number: int, line: str, problem: str) -> None:
        shown = line if len(line) <= 120 else line[:117] + "..."
        super().__init__(f"line {line_number}: {problem}: {shown!r}")
        self.line_number = line_number
        self.line = line
        self.problem = problem


class InvalidMetricQuery(RightsizerError, ValueError):
    """A metric name, label or PromQL template we refuse to send to Prometheus."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"invalid metric query {text!r}: {problem}")
        self.text = text
        self.problem = problem
