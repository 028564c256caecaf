"""Our exposition parser read against prometheus_client's on every exporter text the tests have:
the shapes real clusters store, and the fake exporter in each release's flavour and with each
device kind. Where both accept a text, they must read the same series."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rightsizer.adapters.metrics.exposition import parse_exposition
from rightsizer.adapters.metrics.inspection import strip_elisions
from rightsizer.devcluster.dcgm_text import LABEL_FLAVOURS, render, with_fault
from rightsizer.devcluster.gpu_devices import GpuNode, GpuPod, assign_gpus
from rightsizer.devcluster.scenario import gpu_readings

pytestmark = pytest.mark.unit

SHAPES = Path(__file__).parent.parent / "data" / "exporter_shapes"
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
Series = frozenset[tuple[str, frozenset[tuple[str, str]], float | str]]


def fake_exporter_texts() -> dict[str, str]:
    node = GpuNode("a100-0", 2, "NVIDIA-A100-SXM4-80GB", 81920)
    pod = GpuPod("u", "ml", "web-1", "a100-0", T0, (("main", 1),), util_override=73)
    readings = gpu_readings([node], {"u": pod}, assign_gpus([node], [pod], {}), [], T0)
    texts = {f"fake-{name}": render(readings, names) for name, names in LABEL_FLAVOURS.items()}
    texts["fake-blanks"] = with_fault(texts["fake-new"], "blanks", readings, LABEL_FLAVOURS["new"], 0)
    return texts


TEXTS = {path.stem: strip_elisions(path.read_text())[0] for path in sorted(SHAPES.glob("*.prom"))}
TEXTS.update(fake_exporter_texts())


def ours(text: str) -> Series:
    return frozenset(
        (s.name, frozenset(s.labels.items()), _value(s.value)) for s in parse_exposition(text).series
    )


def theirs(text: str) -> Series:
    return frozenset(
        (sample.name, frozenset(sample.labels.items()), _value(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def _value(value: float) -> float | str:
    # prometheus_client keeps integer text as an int; a float64, as Prometheus stores it, is compared.
    return "NaN" if math.isnan(value) else float(value)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_both_parsers_read_the_same_series(name: str) -> None:
    assert ours(TEXTS[name]) == theirs(TEXTS[name])
