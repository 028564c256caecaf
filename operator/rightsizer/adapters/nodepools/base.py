"""One small interface for whoever adds and removes a pool's machines.

The executor drains a node first (taint, evictions, replacements Running) and only then asks the
provider to remove it, so a provider never has to think about pods. Every method is idempotent:
after a crash the executor may ask again for a removal that already happened.
"""

from __future__ import annotations

from typing import Protocol

from rightsizer.core.errors import RightsizerError


class ProviderError(RightsizerError):
    """The provider could not do what was asked; the message names the object and the remedy."""


class ScaleUpUnsupported(ProviderError):
    """This provider does not add nodes on request (the platform does it on its own)."""

    def __init__(self, pool: str, provider: str, why: str) -> None:
        super().__init__(f"GPUNodePool {pool}: provider {provider} cannot add nodes: {why}")


class NodePoolProvider(Protocol):
    @property
    def type(self) -> str:
        """kwok, static, clusterapi, karpenter, none or fake."""
        ...

    @property
    def can_scale_up(self) -> bool:
        """True when add_nodes launches machines; False when the platform scales up by itself."""
        ...

    @property
    def removes_nodes(self) -> bool:
        """True when remove_node makes the node go away; False for cordon-only providers."""
        ...

    def check(self) -> str | None:
        """Why the provider cannot act now (its API or object missing, access refused), naming the
        remedy; None when it can. Asked every pass: the pool holds while this is not None."""
        ...

    def desired_nodes(self) -> int | None:
        """How many machines the provider is set to run, or None when it does not say."""
        ...

    def add_nodes(self, count: int) -> list[str]:
        """Launch `count` nodes; returns the names known now (may be empty when created later)."""
        ...

    def remove_node(self, node: str) -> None:
        """Remove a drained node (or its machine); removing what is already gone is not an error."""
        ...

    def describe(self) -> str:
        """One line for events and logs: which system owns the machines."""
        ...
