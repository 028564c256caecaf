"""`rightsizer run` refuses a bad consolidation flag with the setting named, before it connects."""

from __future__ import annotations

import pytest

from rightsizer.cli.main import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("flag", "setting"),
    [
        (["--drain-workers", "0"], "consolidation.drain_workers"),
        (["--intent-lease", "1"], "consolidation.intent_lease_seconds"),
        (["--drain-timeout", "-5"], "consolidation.drain_timeout_seconds"),
    ],
)
def test_a_bad_consolidation_flag_is_refused_naming_the_setting(
    flag: list[str], setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--kubeconfig", "/nonexistent", *flag]) == 2
    assert setting in capsys.readouterr().err
