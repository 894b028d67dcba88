"""The demo hands its generated passwords to the app's Settings, not to the process
environment: nothing else in the process (or a child of it) sees them."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.cli import demo
from engine.settings import Settings


def test_the_demo_settings_carry_the_passwords_and_the_environment_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rep's and the sales mailbox's passwords come from the settings; os.environ is as
    it was."""
    for name in [k for k in os.environ if k.startswith("NURTURE_")]:
        monkeypatch.delenv(name)
    before = dict(os.environ)
    passwords = {demo.SALES: "sales-pw", demo.LEAD: "lead-pw", demo.REP: "rep-pw"}
    settings = demo._settings(tmp_path, demo._bundled_example(), SimpleNamespace(imap_port=1),
                              2, passwords, 8025)
    assert dict(os.environ) == before
    [rep] = settings.reps
    assert settings.secret(rep.password_env) == "rep-pw"
    assert settings.secret(settings.mailboxes["sales"].imap.password_env) == "sales-pw"
    assert "rep-pw" not in (tmp_path / "nurture.yaml").read_text()


def test_a_secret_given_to_the_settings_wins_and_others_come_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.load(secrets=...) answers for the names it is given, the environment for the
    rest, and nothing for a name that is in neither."""
    monkeypatch.chdir(tmp_path)  # no nurture.yaml here
    monkeypatch.setenv("SMTP_PASSWORD_SALES", "from-env")
    monkeypatch.setenv("GIVEN", "from-env-too")
    settings = Settings.load(None, secrets={"GIVEN": "given"})
    assert settings.secret("GIVEN") == "given"
    assert settings.secret("SMTP_PASSWORD_SALES") == "from-env"
    assert settings.secret("ABSENT_SECRET_NAME") == ""
    assert settings.secret("") == ""
