"""PromQL built from untrusted values: escaping, anchored pod regexes, template placeholders."""

from __future__ import annotations

import ast
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.adapters.metrics.promql import (
    escape_string,
    matcher,
    metric_names_regex,
    pods_regex,
    quote,
    regex_escape,
    render_template,
    template_placeholders,
)
from rightsizer.core.errors import InvalidMetricQuery

pytestmark = pytest.mark.unit

INJECTIONS = [
    '"} or vector(1) #',
    'x"} or vector(1) #',
    '\\"} or vector(1) #',
    "a\\",
    'ml",pod=~".+',
    "line\nbreak",
    "tab\there\x00nul",
    "`backtick`",
    "'single'",
]


def unquote(literal: str) -> str:
    """PromQL double-quoted strings use Go's escapes, which Python's literal syntax shares for these."""
    value = ast.literal_eval(literal)
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize("value", INJECTIONS)
def test_escaped_value_stays_one_string_literal(value: str) -> None:
    literal = quote(value)
    assert unquote(literal) == value
    # Nothing after the opening quote can close the string early.
    body = literal[1:-1]
    assert not re.search(r'(?<!\\)(?:\\\\)*"', body)


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_through_namespace_is_neutralised(value: str) -> None:
    query = render_template('sum(DCGM_FI_DEV_GPU_UTIL{namespace="{{namespace}}"})', namespace=value)
    prefix, suffix = 'sum(DCGM_FI_DEV_GPU_UTIL{namespace="', '"})'
    assert query.startswith(prefix) and query.endswith(suffix)
    assert unquote('"' + query[len(prefix) : -len(suffix)] + '"') == value


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_through_pod_names_is_neutralised(value: str) -> None:
    query = render_template('m{pod=~"{{pods}}"}', pods=[value, "web-1"])
    regex = unquote(query[len("m{pod=~") : -1])
    assert re.fullmatch(regex, value) and re.fullmatch(regex, "web-1")
    assert not re.fullmatch(regex, "anything-else")


def test_pod_regex_is_anchored_and_matches_only_the_names() -> None:
    regex = pods_regex(["web-1", "web-1", "a.b"])
    assert regex == r"^(?:a\.b|web-1)$"
    assert not re.fullmatch(regex, "axb")
    assert not re.search(regex, "web-10")


def test_empty_pod_list_is_refused_rather_than_matching_empty_labels() -> None:
    with pytest.raises(InvalidMetricQuery):
        pods_regex([])


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5), st.text())
def test_pods_regex_matches_exactly_the_given_names(names: list[str], other: str) -> None:
    regex = pods_regex(names)
    assert all(re.fullmatch(regex, name, flags=re.DOTALL) for name in names)
    assert bool(re.fullmatch(regex, other, flags=re.DOTALL)) == (other in names)


@given(st.text())
def test_escape_string_round_trips(value: str) -> None:
    assert unquote(quote(value)) == value


def test_regex_escape_uses_re2_metacharacters_only() -> None:
    assert regex_escape("a.b*c-d_e/f") == r"a\.b\*c-d_e/f"


def test_matcher_validates_label_names_and_operators() -> None:
    assert matcher("namespace", "=", 'a"b') == 'namespace="a\\"b"'
    with pytest.raises(InvalidMetricQuery):
        matcher('pod"} or vector(1) #', "=", "x")
    with pytest.raises(InvalidMetricQuery):
        matcher("pod", "=~~", "x")


def test_metric_names_are_checked_before_use() -> None:
    assert metric_names_regex(["B", "A"]) == "^(?:A|B)$"
    with pytest.raises(InvalidMetricQuery):
        metric_names_regex(['m"} or vector(1) #'])


def test_template_renders_both_placeholders() -> None:
    query = render_template(
        'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="{{ namespace }}", pod=~"{{pods}}"})',
        namespace="ml",
        pods=["web-2", "web-1"],
    )
    assert query == 'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ml", pod=~"^(?:web-1|web-2)$"})'


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('m{namespace="{{ns}}"}', "unknown placeholder"),
        ('m{namespace="{{ namespace }}", x="{{pod}}"}', "unknown placeholder"),
        ("m{namespace={{namespace}}}", "inside a double-quoted"),
        ("m{namespace='{{namespace}}'}", "inside a double-quoted"),
        ("m{namespace=`{{namespace}}`}", "inside a double-quoted"),
        ('m{a="x"} # "{{namespace}}"', "inside a double-quoted"),
        ('m{a="{{namespace}"}', "malformed placeholder"),
        ('m{a="{{namespace}}}}"}', "malformed placeholder"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    with pytest.raises(InvalidMetricQuery) as caught:
        template_placeholders(template)
    assert problem in caught.value.problem


def test_placeholders_inside_an_escaped_quote_are_still_inside_the_string() -> None:
    assert template_placeholders('m{a="say \\"{{namespace}}\\""}') == {"namespace"}


def test_template_needs_the_values_it_uses() -> None:
    with pytest.raises(InvalidMetricQuery, match="no namespace"):
        render_template('m{namespace="{{namespace}}"}')
    assert render_template("sum(rate(requests_total[1m]))") == "sum(rate(requests_total[1m]))"


def test_escape_string_handles_control_characters() -> None:
    assert escape_string("a\x01\x7f") == "a\\x01\\x7f"
