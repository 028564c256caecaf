"""String label selectors as the /scale subresource reports them."""

from __future__ import annotations

import pytest

from rightsizer.core.selectors import InvalidSelector, matches

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=chat", {"app": "chat"}, True),
        ("app==chat", {"app": "chat", "x": "y"}, True),
        ("app=chat", {"app": "embed"}, False),
        ("app=chat,tier=gpu", {"app": "chat"}, False),
        ("app!=chat", {"app": "embed"}, True),
        ("app!=chat", {}, True),
        ("tier in (gpu, cpu)", {"tier": "cpu"}, True),
        ("tier in (gpu,cpu),app=chat", {"tier": "gpu", "app": "chat"}, True),
        ("tier notin (gpu)", {"tier": "gpu"}, False),
        ("canary", {"canary": ""}, True),
        ("!canary", {"canary": "1"}, False),
        ("!canary", {}, True),
        ("", {"app": "chat"}, False),
    ],
)
def test_selector_strings_match_like_the_api_server(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert matches(selector, labels) is expected


@pytest.mark.parametrize("bad", ["app=(", "!tier in (a)", "a b c"])
def test_unreadable_selectors_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSelector):
        matches(bad, {})
