"""Prometheus text exposition format (0.0.4): a strict parser and the escaping helpers.

Our own parser rather than a dependency: we need a typed error naming the bad line, and a cap on
series per scrape so one exporter with a label explosion cannot exhaust the operator's memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rightsizer.core.errors import ExpositionParseError

DEFAULT_MAX_SERIES = 200_000

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
# Go's strconv.ParseFloat spellings that exporters emit; Python's float() also takes "1_000", we do not.
_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity))|(?i:nan)",
)
_INT = re.compile(r"[+-]?\d+")
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class ScrapedSeries:
    """One sample line: metric name, labels, value and the optional timestamp (ms since the epoch)."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Exposition:
    series: tuple[ScrapedSeries, ...]
    help: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)


def escape_label_value(value: str) -> str:
    """Escape a label value for a double-quoted exposition string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """Escape a HELP docstring (backslash and newline only, per the format)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def parse_exposition(text: str, max_series: int = DEFAULT_MAX_SERIES) -> Exposition:
    """Parse a whole /metrics body. Raises ExpositionParseError naming the first bad line."""
    series: list[ScrapedSeries] = []
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip(" \t"):
            continue
        if line.lstrip(" \t").startswith("#"):
            _parse_comment(line, number, helps, types)
            continue
        if len(series) >= max_series:
            raise ExpositionParseError(
                number, line, f"more than {max_series} series in one scrape (a label explosion?)"
            )
        series.append(_parse_sample(line, number))
    return Exposition(tuple(series), helps, types)


def _parse_comment(line: str, number: int, helps: dict[str, str], types: dict[str, str]) -> None:
    keyword, rest = _first_word(line.lstrip(" \t")[1:])
    if keyword not in ("HELP", "TYPE"):
        return  # a plain comment
    name, rest = _first_word(rest)
    if not METRIC_NAME.fullmatch(name):
        raise ExpositionParseError(number, line, f"invalid metric name {name!r} in # {keyword}")
    if keyword == "HELP":
        helps[name] = _unescape_help(rest, number, line)
        return
    kind = rest.strip()
    if kind not in _TYPES:
        raise ExpositionParseError(number, line, f"unknown metric type {kind!r}")
    if name in types:
        raise ExpositionParseError(number, line, f"second # TYPE line for {name}")
    types[name] = kind


def _first_word(text: str) -> tuple[str, str]:
    """Split off the first blank-separated word (blanks are spaces and tabs, as in the format)."""
    text = text.lstrip(" \t")
    end = 0
    while end < len(text) and text[end] not in " \t":
        end += 1
    return text[:end], text[end:].lstrip(" \t")


def _unescape_help(text: str, number: int, line: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                raise ExpositionParseError(number, line, "HELP text ends with a lone backslash")
            nxt = text[i + 1]
            # Only \\ and \n are escapes in HELP; any other backslash is literal.
            out.append({"\\": "\\", "n": "\n"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _parse_sample(line: str, number: int) -> ScrapedSeries:
    pos = _skip_blanks(line, 0)
    name_match = METRIC_NAME.match(line, pos)
    if not name_match:
        raise ExpositionParseError(number, line, "expected a metric name")
    name = name_match.group()
    pos = name_match.end()
    labels: dict[str, str] = {}
    brace = _skip_blanks(line, pos)
    if brace < len(line) and line[brace] == "{":
        pos = _parse_labels(line, brace + 1, number, labels)
    rest = line[pos:]
    tokens = rest.split()
    if not tokens:
        raise ExpositionParseError(number, line, "missing value")
    if rest[0] not in " \t":
        raise ExpositionParseError(number, line, "expected a blank before the value")
    if len(tokens) > 2:
        raise ExpositionParseError(number, line, "unexpected text after the timestamp")
    if not _FLOAT.fullmatch(tokens[0]):
        raise ExpositionParseError(number, line, f"invalid value {tokens[0]!r}")
    value = float(tokens[0])
    if math.isnan(value):
        value = math.nan  # one canonical NaN; the sign bit of an exported NaN means nothing
    timestamp: int | None = None
    if len(tokens) == 2:
        if not _INT.fullmatch(tokens[1]):
            raise ExpositionParseError(number, line, f"invalid timestamp {tokens[1]!r}")
        timestamp = int(tokens[1])
    return ScrapedSeries(name, labels, value, timestamp)


def _parse_labels(line: str, pos: int, number: int, labels: dict[str, str]) -> int:
    """Parse `name="value", ...}` starting after the brace; returns the position after `}`."""
    while True:
        pos = _skip_blanks(line, pos)
        if pos >= len(line):
            raise ExpositionParseError(number, line, "unterminated label set")
        if line[pos] == "}":
            return pos + 1
        name_match = LABEL_NAME.match(line, pos)
        if not name_match:
            raise ExpositionParseError(number, line, f"invalid label name at column {pos + 1}")
        label = name_match.group()
        pos = _skip_blanks(line, name_match.end())
        if pos >= len(line) or line[pos] != "=":
            raise ExpositionParseError(number, line, f"expected '=' after label {label!r}")
        pos = _skip_blanks(line, pos + 1)
        if pos >= len(line) or line[pos] != '"':
            raise ExpositionParseError(number, line, f"expected a quoted value for label {label!r}")
        value, pos = _parse_quoted(line, pos + 1, number)
        if label in labels:
            raise ExpositionParseError(number, line, f"duplicate label {label!r}")
        labels[label] = value
        pos = _skip_blanks(line, pos)
        if pos < len(line) and line[pos] == ",":
            pos += 1
        elif pos < len(line) and line[pos] != "}":
            raise ExpositionParseError(number, line, f"expected ',' or '}}' after label {label!r}")


def _parse_quoted(line: str, pos: int, number: int) -> tuple[str, int]:
    out: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            escaped = _LABEL_ESCAPES.get(line[pos + 1] if pos + 1 < len(line) else "")
            if escaped is None:
                raise ExpositionParseError(number, line, f"invalid escape in label value at column {pos + 1}")
            out.append(escaped)
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise ExpositionParseError(number, line, "unterminated label value")


def _skip_blanks(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos
