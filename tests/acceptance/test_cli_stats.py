"""`nurture stats` end to end: the repo's sequences, a real SMTP sink, a real SQLite file.
Two leads get the first touch (`run --once`), one replies (through the reply handler); the
table and `--json` show it per sequence and per step, and a misspelt name is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.common import load_app
from engine.cli.main import app
from tests.servers.smtp_sink import SmtpSink
from tests.servers.web_app import reply_to

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def project(tmp_path: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "nurture.yaml").write_text(f"""\
database_url: sqlite:///nurture.db
sequences_dir: {ROOT / 'sequences'}
templates_dir: {ROOT / 'templates'}
base_url: https://nurture.example.com
postal_address: Example Inc., 1 Main Street, Springfield
mailboxes:
  sales:
    address: sales@example.com
    from_name: Sam Rivera
    smtp: {{host: 127.0.0.1, port: {sink.port}, tls: none, timeout: 5}}
reps: [{{name: alice, email: alice@reps.test}}]
""")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURTURE_SECRET_KEY", "acceptance-secret")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def cli(project: Path) -> Callable[..., str]:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        return result.output
    return run


@pytest.fixture
def replied(cli: Callable[..., str], project: Path) -> None:
    """ada and bob got the first touch of demo-request; ada answered it."""
    cli("db", "upgrade")
    for email in ("ada@example.com", "bob@example.com"):
        cli("enroll", "demo-request", "--email", email, "--set", "first_name=Ada")
    assert "sent 2" in cli("run", "--once")
    nurture = load_app(project / "nurture.yaml")
    try:
        reply_to(nurture, "ada@example.com", "Yes, Thursday works.", uid=1)
    finally:
        nurture.store.close()


def test_json_counts_the_reply_against_the_first_step(cli: Callable[..., str],
                                                      replied: None) -> None:
    """Totals and the first step: 2 enrolled, 2 sent, 1 replied, reply rate 0.5."""
    [seq] = json.loads(cli("stats", "demo-request", "--json"))
    totals, first = seq["totals"], seq["steps"][0]
    assert seq["sequence"] == "demo-request"
    assert (totals["enrolled"], totals["sent"], totals["replied"], totals["reply_rate"]) == (
        2, 2, 1, 0.5)
    assert (first["name"], first["sent"], first["replied"]) == ("first-touch", 2, 1)
    assert totals["median_to_touch"] >= 0
    assert [s["replied"] for s in seq["steps"][1:]] == [0] * (len(seq["steps"]) - 1)


def test_the_table_shows_every_sequence_and_its_steps(cli: Callable[..., str],
                                                      replied: None) -> None:
    """One table per loaded sequence (zeros where no lead is), steps numbered in order."""
    out = cli("stats")
    for name in ("demo-request", "ripen", "webinar-followup"):
        assert name in out
    assert "1. first-touch" in out and "50.0%" in out
    assert "auto-replied" in out and "median to touch" in out


def test_an_unknown_sequence_is_a_clear_error(project: Path) -> None:
    """Exit 1, the close name suggested, no traceback."""
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", "from engine.cli.main import main; main()", "db", "upgrade"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-c", "from engine.cli.main import main; main()",
         "stats", "demo-reqest"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no sequence named 'demo-reqest'" in done.stderr
    assert "did you mean 'demo-request'?" in done.stderr
