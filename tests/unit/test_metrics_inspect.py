"""`rightsizer metrics inspect --file`: what the operator reads from pasted exporter text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rightsizer.cli.main import main

pytestmark = pytest.mark.unit

SHAPES = Path(__file__).parent.parent / "data" / "exporter_shapes"


def inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["metrics", "inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_names_each_pod_with_its_gpus_utilisation_signal_and_sharing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = inspect(capsys, "--file", str(SHAPES / "time_sliced.prom"), "--output", "json")
    assert code == 0
    assert json.loads(out) == {
        "pods": {
            "web/chat-0": {"gpus": 1, "utilization": 64, "signal": "DCGM_FI_DEV_GPU_UTIL", "shared": True},
            "web/chat-1": {"gpus": 1, "utilization": 64, "signal": "DCGM_FI_DEV_GPU_UTIL", "shared": True},
            "web/embed-0": {"gpus": 1, "utilization": 12, "signal": "DCGM_FI_DEV_GPU_UTIL", "shared": False},
        },
        "unattributed": 0,
        "rejected": {},
        "shape": "new",
    }
    assert "skipped 1 '...' line(s)" in err


def test_the_exported_shape_is_found_and_refused_values_are_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = inspect(capsys, "--file", str(SHAPES / "honor_labels_false.prom"), "--output", "json")
    report = json.loads(out)
    assert (list(report["pods"]), report["unattributed"], report["shape"]) == (["ml/train-0"], 1, "exported")
    _, out, _ = inspect(capsys, "--file", str(SHAPES / "sentinels.prom"), "--output", "json")
    report = json.loads(out)
    assert report["rejected"] == {"above_rated_power": 1, "out_of_range": 1, "sentinel": 3}
    assert report["pods"]["ml/q"]["utilization"] is None


def test_text_output_hints_what_to_change_when_nothing_is_attributed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = inspect(capsys, "--file", str(SHAPES / "honor_labels_false.prom"), "--pod-labels", "old")
    assert code == 0 and "hint: no series named a workload pod" in out and "exported_pod" in out
    _, out, _ = inspect(capsys, "--file", str(SHAPES / "honor_labels_false.prom"))
    assert "ml/train-0" in out and "71.0" in out and "hint" not in out


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"status":"success","data":{"result":[]}}\n', "line 1: expected a metric name"),
        ("DCGM_FI_DEV_GPU_UTIL{gpu=0} 5\n", "line 1: expected a quoted value for label 'gpu'"),
    ],
)
def test_input_that_is_not_exposition_text_exits_2_naming_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, says: str
) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(body)
    code, out, err = inspect(capsys, "--file", str(path))
    assert code == 2 and out == ""
    assert "is not exposition text" in err and says in err


def test_a_bad_pod_labels_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = inspect(capsys, "--file", str(SHAPES / "time_sliced.prom"), "--pod-labels", "newest")
    assert code == 2 and "auto, new, old, exported" in err
