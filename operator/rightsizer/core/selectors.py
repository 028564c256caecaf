"""Label selectors in their string form (`app=chat,tier in (a,b),!canary`), as the /scale
subresource reports them in status.selector, parsed into the structured selector the core matches."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rightsizer.core.errors import RightsizerError
from rightsizer.core.matching import selector_matches
from rightsizer.core.snapshot import Labels, LabelSelector, Requirement


class InvalidSelector(RightsizerError, ValueError):
    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"label selector {text!r}: {problem}")


_SET = re.compile(r"^\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas that are not inside a value set's parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_selector(text: str) -> LabelSelector:
    labels: list[tuple[str, str]] = []
    requirements: list[Requirement] = []
    for part in _split(text):
        eq = _EQ.match(part)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                requirements.append(Requirement(key, "NotIn", (value,)))
            else:
                labels.append((key, value))
            continue
        match = _SET.match(part)
        if not match:
            raise InvalidSelector(text, f"cannot read {part.strip()!r}")
        negated, key, op, values = match.groups()
        if op:
            if negated:
                raise InvalidSelector(text, f"'!' cannot be combined with {op}")
            items = tuple(v.strip() for v in values.split(",") if v.strip())
            requirements.append(Requirement(key, "In" if op == "in" else "NotIn", items))
        else:
            requirements.append(Requirement(key, "DoesNotExist" if negated else "Exists"))
    return LabelSelector(tuple(labels), tuple(requirements))


def matches(text: str, labels: Labels) -> bool:
    """An empty selector string selects nothing here: a target without a selector has no pods."""
    if not text.strip():
        return False
    return selector_matches(parse_selector(text), labels)


def format_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object (`{matchLabels, matchExpressions}`) in the string form /scale reports:
    requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. None or empty: ``""``."""
    parts: list[tuple[str, str]] = [
        (str(k), f"{k}={v}") for k, v in (selector or {}).get("matchLabels", {}).items()
    ]
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op = str(expr.get("key", "")), expr.get("operator")
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(
            str(op), f"!{key}"
        )
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise InvalidSelector(str(dict(selector or {})), f"unknown operator {op!r}")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))
