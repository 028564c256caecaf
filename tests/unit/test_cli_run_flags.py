"""`rightsizer run` refuses a bad consolidation flag with the setting named, before it connects."""

from __future__ import annotations

import pytest

from rightsizer.cli.main import main
from rightsizer.runtime.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("flag", "setting"),
    [
        (["--drain-workers", "0"], "consolidation.drain_workers"),
        (["--intent-lease", "1"], "consolidation.intent_lease_seconds"),
        (["--drain-timeout", "-5"], "consolidation.drain_timeout_seconds"),
        (["--removal-timeout", "0"], "consolidation.removal_timeout_seconds"),
        (["--scale-up-cooldown", "-1"], "consolidation.scale_up_cooldown_seconds"),
    ],
)
def test_a_bad_consolidation_flag_is_refused_naming_the_setting(
    flag: list[str], setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--kubeconfig", "/nonexistent", *flag]) == 2
    assert setting in capsys.readouterr().err


def test_a_bad_top_level_flag_is_refused_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--kubeconfig", "/nonexistent", "--interval", "0"]) == 2
    assert "interval_seconds" in capsys.readouterr().err


def test_flags_go_over_the_environment_and_keep_what_they_do_not_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIGHTSIZER_CONSOLIDATION__DRAIN_WORKERS", "3")
    monkeypatch.setenv("RIGHTSIZER_CONSOLIDATION__INTENT_LEASE_SECONDS", "300")
    monkeypatch.setenv("RIGHTSIZER_NAMESPACES", "ml, web")
    monkeypatch.setenv("RIGHTSIZER_CLUSTER_NAME", "the dev tooling's own variable")
    settings = Settings.load(consolidation={"intent_lease_seconds": 30, "drain_timeout_seconds": None})
    assert (settings.consolidation.drain_workers, settings.consolidation.intent_lease_seconds) == (3, 30)
    assert settings.namespaces == ["ml", "web"]
