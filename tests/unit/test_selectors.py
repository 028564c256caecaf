"""String label selectors as the /scale subresource reports them."""

from __future__ import annotations

from typing import Any

import pytest

from rightsizer.core.selectors import InvalidSelector, format_selector, matches

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


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (None, ""),
        ({}, ""),
        ({"matchLabels": {"app": "web"}}, "app=web"),
        ({"matchLabels": {"tier": "gpu", "app": "web"}}, "app=web,tier=gpu"),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b", "a"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "track", "operator": "NotIn", "values": ["beta"]},
                ],
            },
            "app=web,!canary,gpu,track notin (beta),zone in (a,b)",
        ),
    ],
)
def test_a_label_selector_object_formats_like_the_scale_subresource(
    selector: dict[str, Any] | None, text: str
) -> None:
    assert format_selector(selector) == text


def test_a_formatted_selector_selects_what_the_object_selects() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
    }
    text = format_selector(selector)
    assert matches(text, {"app": "web", "zone": "a"})
    assert not matches(text, {"app": "web", "zone": "c"})
    assert not matches(text, {"app": "db", "zone": "a"})


def test_an_unknown_operator_is_refused() -> None:
    with pytest.raises(InvalidSelector, match="unknown operator"):
        format_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})
