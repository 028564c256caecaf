"""The Prometheus text exposition parser: what exporters write, and what it refuses."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsizer.adapters.metrics.exposition import (
    escape_help,
    escape_label_value,
    parse_exposition,
)
from rightsizer.core.errors import ExpositionParseError
from rightsizer.devcluster.dcgm_text import LABEL_FLAVOURS, render
from rightsizer.devcluster.gpu_devices import GpuNode, GpuPod, assign_gpus
from rightsizer.devcluster.scenario import gpu_readings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_fake_exporter_output_round_trips() -> None:
    node = GpuNode("a100-0", 2, "NVIDIA-A100-SXM4-80GB", 81920)
    pod = GpuPod("u", "ml", "web-1", "a100-0", T0, (("main", 1),), util_override=73)
    readings = gpu_readings([node], {"u": pod}, assign_gpus([node], [pod], {}), [], T0)
    parsed = parse_exposition(render(readings, LABEL_FLAVOURS["new"]))

    assert parsed.types["DCGM_FI_DEV_GPU_UTIL"] == "gauge"
    assert parsed.help["DCGM_FI_DEV_GPU_UTIL"] == "GPU utilization (in %)."
    assert len(parsed.series) == 7 * 2
    busy = [s for s in parsed.series if s.labels.get("pod") == "web-1"]
    by_name = {s.name: s.value for s in busy}
    assert by_name["DCGM_FI_DEV_GPU_UTIL"] == 73
    assert by_name["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] == pytest.approx(0.73)
    assert by_name["DCGM_FI_DEV_POWER_USAGE"] == pytest.approx(308.2)
    assert busy[0].labels["modelName"] == "NVIDIA A100-SXM4-80GB"
    assert busy[0].labels["namespace"] == "ml" and busy[0].labels["container"] == "main"
    assert all(s.timestamp_ms is None for s in parsed.series)


def test_real_exporter_spacing_after_commas_is_accepted() -> None:
    # dcgm-exporter's own README shows `{gpu="0", UUID="..."}`.
    text = 'DCGM_FI_DEV_SM_CLOCK{gpu="0", UUID="GPU-604ac76c",container="",namespace="",pod=""} 139\n'
    (series,) = parse_exposition(text).series
    assert series.labels == {"gpu": "0", "UUID": "GPU-604ac76c", "container": "", "namespace": "", "pod": ""}
    assert series.value == 139


@pytest.mark.parametrize(
    ("line", "value", "timestamp"),
    [
        ("m 1", 1.0, None),
        ("m{} 1.5e3", 1500.0, None),
        ('m{a="b",} 2', 2.0, None),
        ("m 3 1700000000000", 3.0, 1700000000000),
        ("m -4 -5", -4.0, -5),
        ("m +Inf", math.inf, None),
        ("m -Inf", -math.inf, None),
        ("m\t7", 7.0, None),
        ("m .5", 0.5, None),
        ("m 1\r", 1.0, None),
    ],
)
def test_values_and_optional_timestamps(line: str, value: float, timestamp: int | None) -> None:
    (series,) = parse_exposition(line + "\n").series
    assert series.value == value
    assert series.timestamp_ms == timestamp


def test_nan_is_kept_as_nan() -> None:
    (series,) = parse_exposition("m NaN\n").series
    assert math.isnan(series.value)


def test_label_value_escapes() -> None:
    (series,) = parse_exposition('m{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="x}y,z=\\"w"} 1\n').series
    assert series.labels == {"a": 'q"uote', "b": "back\\slash", "c": "new\nline", "d": 'x}y,z="w'}


def test_comments_and_blank_lines_are_skipped_and_help_is_unescaped() -> None:
    text = (
        "# a comment\n\n#HELP not a help line really\n"
        "# HELP m line one\\nline two \\\\ done\n# TYPE m counter\nm 1\n"
    )
    parsed = parse_exposition(text)
    assert parsed.help["m"] == "line one\nline two \\ done"
    assert parsed.types == {"m": "counter"}
    assert len(parsed.series) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("m\n", "missing value"),
        ("m one\n", "invalid value"),
        ("m 1_000\n", "invalid value"),
        ("m 1 2 3\n", "unexpected text"),
        ("m 1 1.5\n", "invalid timestamp"),
        ('m{a="b"}1\n', "expected a blank"),
        ('m{a="b" 1\n', "expected ',' or '}'"),
        ("m{a=b} 1\n", "expected a quoted value"),
        ('m{a="b} 1\n', "unterminated label value"),
        ('m{a="\\x"} 1\n', "invalid escape"),
        ('m{1a="b"} 1\n', "invalid label name"),
        ('m{a="b",a="c"} 1\n', "duplicate label"),
        ('m{a="b",', "unterminated label set"),
        ("1m 1\n", "expected a metric name"),
        ("<html><body>502 Bad Gateway</body></html>\n", "expected a metric name"),
        ("# TYPE ok counter\n", "second # TYPE"),
        ("# TYPE m flavour\n", "unknown metric type"),
        ("# HELP 9m text\n", "invalid metric name"),
    ],
)
def test_malformed_input_raises_a_typed_error_naming_the_line(text: str, reason: str) -> None:
    with pytest.raises(ExpositionParseError) as caught:
        parse_exposition("# TYPE ok gauge\nok 1\n" + text)
    assert caught.value.line_number == 3
    assert reason in caught.value.problem
    assert "line 3" in str(caught.value)


def test_series_cap_survives_a_label_explosion() -> None:
    text = "".join(f'm{{id="{i}"}} 1\n' for i in range(11))
    assert len(parse_exposition(text, max_series=11).series) == 11
    with pytest.raises(ExpositionParseError, match="more than 10 series") as caught:
        parse_exposition(text, max_series=10)
    assert caught.value.line_number == 11


@given(st.text())
def test_any_label_value_round_trips_through_escaping(value: str) -> None:
    text = f'm{{v="{escape_label_value(value)}"}} 1\n'
    (series,) = parse_exposition(text).series
    assert series.labels["v"] == value


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n")))
def test_any_help_text_round_trips_through_escaping(value: str) -> None:
    parsed = parse_exposition(f"# HELP m {escape_help(value)}\n")
    assert parsed.help["m"] == value.lstrip(" \t")
