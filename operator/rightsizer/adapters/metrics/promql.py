"""Building PromQL from untrusted values without ever concatenating them raw.

Namespaces and pod names come from the cluster and templates from users' GPUWorkloads. A value
such as `x"} or vector(1) #` must stay a string inside its label matcher, so every value is escaped
for a double-quoted PromQL string, pod lists become an anchored regex of regex-escaped names, and
template placeholders are only accepted where they sit inside a double-quoted string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rightsizer.core.errors import InvalidMetricQuery

PLACEHOLDERS = frozenset({"namespace", "pods"})

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
_OPERATORS = frozenset({"=", "!=", "=~", "!~"})
# Characters RE2 gives a meaning to; the same set Go's regexp.QuoteMeta escapes.
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_string(value: str) -> str:
    """Escape `value` for use between double quotes in PromQL (Go string literal rules)."""
    out: list[str] = []
    for char in value:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def quote(value: str) -> str:
    """A complete double-quoted PromQL string literal holding `value`."""
    return f'"{escape_string(value)}"'


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so `value` matches only itself."""
    return "".join("\\" + char if char in _REGEX_SPECIAL else char for char in value)


def pods_regex(pods: Iterable[str]) -> str:
    """An anchored alternation that matches exactly the given names, e.g. `^(?:a|b\\.c)$`."""
    names = sorted(set(pods))
    if not names:
        raise InvalidMetricQuery("", "no pod names to match; skip the query instead")
    return "^(?:" + "|".join(regex_escape(name) for name in names) + ")$"


def matcher(label: str, operator: str, value: str) -> str:
    """One label matcher such as `namespace="ml"`, with the value escaped."""
    if not _LABEL_NAME.fullmatch(label):
        raise InvalidMetricQuery(label, "not a valid label name")
    if operator not in _OPERATORS:
        raise InvalidMetricQuery(operator, "not a label matching operator")
    return f"{label}{operator}{quote(value)}"


def selector(matchers: Iterable[str]) -> str:
    """`{a="b",c=~"d"}` from already built matchers."""
    return "{" + ",".join(matchers) + "}"


_SELECTOR_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\\n]|\\.)*")\s*(?:,|$)'
)


def parse_matchers(text: str) -> list[str]:
    """A user's series selector (`job="dcgm",cluster=~"eu-.*"`, braces optional) as matchers.
    Only label matchers are accepted: nothing else can be smuggled into the queries."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out: list[str] = []
    pos = 0
    while pos < len(body.rstrip()):
        found = _SELECTOR_MATCHER.match(body, pos)
        if not found or found.end() == pos:
            raise InvalidMetricQuery(
                text, f'expected label matchers such as job="dcgm-exporter" at {pos + 1}'
            )
        label, operator, literal = found.groups()
        if label == "__name__":
            raise InvalidMetricQuery(text, "the selector may not choose metric names")
        out.append(f"{label}{operator}{literal}")
        pos = found.end()
    return out


def metric_names_regex(names: Iterable[str]) -> str:
    """Anchored alternation of metric names for a `__name__=~` matcher."""
    checked = sorted(set(names))
    for name in checked:
        if not _METRIC_NAME.fullmatch(name):
            raise InvalidMetricQuery(name, "not a valid metric name")
    return "^(?:" + "|".join(regex_escape(name) for name in checked) + ")$"


def validate_metric_name(name: str) -> str:
    if not _METRIC_NAME.fullmatch(name):
        raise InvalidMetricQuery(name, "not a valid metric name")
    return name


def template_placeholders(template: str) -> set[str]:
    """The placeholders a template uses; raises on unknown names or placeholders outside strings."""
    used: set[str] = set()
    for start, end, name in _scan_placeholders(template):
        if name not in PLACEHOLDERS:
            raise InvalidMetricQuery(
                template, f"unknown placeholder {{{{{name}}}}}; only {{{{namespace}}}} and {{{{pods}}}} exist"
            )
        if not _inside_double_quotes(template, start, end):
            raise InvalidMetricQuery(
                template,
                f"placeholder {{{{{name}}}}} must be inside a double-quoted label value, "
                'e.g. pod=~"{{pods}}"',
            )
        used.add(name)
    return used


def render_template(template: str, namespace: str | None = None, pods: Iterable[str] | None = None) -> str:
    """Fill `{{namespace}}` and `{{pods}}` with escaped values; the only way templates become queries."""
    used = template_placeholders(template)
    values: dict[str, str] = {}
    if "namespace" in used:
        if namespace is None:
            raise InvalidMetricQuery(template, "uses {{namespace}} but no namespace was given")
        values["namespace"] = escape_string(namespace)
    if "pods" in used:
        if pods is None:
            raise InvalidMetricQuery(template, "uses {{pods}} but no pods were given")
        values["pods"] = escape_string(pods_regex(pods))
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _scan_placeholders(template: str) -> list[tuple[int, int, str]]:
    found = [(m.start(), m.end(), m.group(1)) for m in _PLACEHOLDER.finditer(template)]
    # A lone "{{" or "}}" that is not a placeholder is a typo we refuse rather than send.
    stripped = _PLACEHOLDER.sub("", template)
    if "{{" in stripped or "}}" in stripped:
        raise InvalidMetricQuery(template, "malformed placeholder; write {{namespace}} or {{pods}}")
    return found


def _inside_double_quotes(template: str, start: int, end: int) -> bool:
    """True when [start, end) lies within one double-quoted PromQL string literal."""
    quote_char: str | None = None
    opened_at = -1
    i = 0
    while i < start:
        char = template[i]
        if quote_char is None:
            if char in "\"'`":
                quote_char, opened_at = char, i
            elif char == "#":
                newline = template.find("\n", i)
                i = len(template) if newline == -1 else newline
                continue
        elif char == "\\" and quote_char != "`":
            i += 2
            continue
        elif char == quote_char:
            quote_char = None
        i += 1
    if quote_char != '"' or opened_at < 0:
        return False
    # The string must not close inside the placeholder itself.
    return '"' not in template[start:end]
