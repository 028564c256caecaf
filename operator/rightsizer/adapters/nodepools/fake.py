"""In-memory provider for tests: remembers its nodes and every call."""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.adapters.nodepools.base import ProviderError, ScaleUpUnsupported


class FakeProvider:
    def __init__(
        self, pool: str, nodes: Iterable[str] = (), *, can_scale_up: bool = True, fail_removal: bool = False
    ) -> None:
        self.pool = pool
        self.nodes: list[str] = list(nodes)
        self.removed: list[str] = []
        self.added: list[str] = []
        self._can_scale_up = can_scale_up
        self.fail_removal = fail_removal
        self.problem: str | None = None  # what check() says

    @property
    def type(self) -> str:
        return "fake"

    @property
    def can_scale_up(self) -> bool:
        return self._can_scale_up

    @property
    def removes_nodes(self) -> bool:
        return True

    def check(self) -> str | None:
        return self.problem

    def desired_nodes(self) -> int:
        return len(self.nodes)

    def add_nodes(self, count: int) -> list[str]:
        if not self._can_scale_up:
            raise ScaleUpUnsupported(self.pool, "fake", "configured without scale-up")
        names = [f"{self.pool}-new-{len(self.added) + i}" for i in range(count)]
        self.nodes.extend(names)
        self.added.extend(names)
        return names

    def remove_node(self, node: str) -> None:
        if self.fail_removal:
            raise ProviderError(f"GPUNodePool {self.pool}: removal of {node} refused (fake)")
        if node in self.nodes:
            self.nodes.remove(node)
            self.removed.append(node)

    def describe(self) -> str:
        return f"fake: {len(self.nodes)} in-memory nodes"
