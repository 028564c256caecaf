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
