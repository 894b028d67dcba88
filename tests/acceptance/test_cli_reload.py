"""`nurture run` reloads sequences without a restart, end to end: the real entry point as a
process, copies of the repo's sequences and templates, a real SMTP sink. SIGHUP with a broken
file: reported as file:line, the daemon lives on and sends the other sequences.
`--reload-sequences`: an edited template is picked up without a signal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 30.0  # upper bound; every wait ends as soon as its condition holds


@pytest.fixture
def project(tmp_path: Path, sink: SmtpSink) -> Path:
    """Editable copies of the example sequences and templates; mailbox `sales` -> the sink."""
    shutil.copytree(ROOT / "sequences", tmp_path / "sequences")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "nurture.yaml").write_text(f"""\
database_url: sqlite:///nurture.db
sequences_dir: sequences
templates_dir: templates
base_url: https://nurture.example.com
postal_address: Example Inc., 1 Main Street, Springfield
heartbeat_seconds: 1
http_port: 0
log_format: json
mailboxes:
  sales:
    address: sales@example.com
    from_name: Sam Rivera
    smtp: {{host: 127.0.0.1, port: {sink.port}, tls: none, timeout: 5}}
""")
    nurture(tmp_path, "db", "upgrade")
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(COLUMNS="200", PYTHONPATH=str(ROOT), NURTURE_SECRET_KEY="acceptance-secret")
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from engine.cli.main import main; main()", *args]


def nurture(cwd: Path, *args: str) -> str:
    done = subprocess.run(_cmd(*args), cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


class Running:
    """`nurture run ...` in the background; its JSON log lines in a file."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.log = cwd / "run.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(_cmd("run", *args), cwd=cwd, env=_env(),
                                         stdout=out, stderr=subprocess.STDOUT)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [e for e in map(_json, lines) if e.get("event") == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _json(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return wait_until(condition, timeout, what, every=0.05)


def subject(raw: bytes) -> str:
    return str(message_from_bytes(raw, policy=policy.default)["Subject"])


def test_sighup_with_a_broken_file_reports_it_and_keeps_sending_the_others(
        project: Path, sink: SmtpSink) -> None:
    """webinar-followup.yaml made unreadable + SIGHUP: sequence_problem names the file and
    line, the daemon stays up, and a demo-request enrollment still gets its first touch."""
    daemon = Running(project)
    try:
        until(lambda: daemon.events("http_listening"), "the daemon to start")
        (project / "sequences" / "webinar-followup.yaml").write_text("name: x\nsteps: [oops\n")
        daemon.proc.send_signal(signal.SIGHUP)
        [reloaded] = until(lambda: daemon.events("sequences_reloaded"), "the reload")
        assert reloaded["removed"] == ["webinar-followup"]
        assert reloaded["loaded"] == ["demo-request", "ripen"]
        problems = [e["problem"] for e in daemon.events("sequence_problem")]
        assert any(p.startswith("sequences/webinar-followup.yaml:2: ") for p in problems), \
            problems
        nurture(project, "enroll", "demo-request", "--email", "ada@example.com",
                "--set", "first_name=Ada")
        until(lambda: sink.received, "the first touch")
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0


def test_reload_sequences_picks_up_an_edited_template_without_a_signal(
        project: Path, sink: SmtpSink) -> None:
    """The next first touch carries the subject written into the template while running."""
    daemon = Running(project, "--reload-sequences")
    try:
        until(lambda: daemon.events("http_listening"), "the daemon to start")
        path = project / "templates" / "demo-request" / "first-touch.md.j2"
        path.write_text(path.read_text().replace("Your demo request,", "Your demo, edited,"))
        [reloaded] = until(lambda: daemon.events("sequences_reloaded"), "the reload")
        assert reloaded["reason"] == "files changed" and reloaded["changed"] == []
        nurture(project, "enroll", "demo-request", "--email", "ada@example.com",
                "--set", "first_name=Ada")
        [got] = until(lambda: sink.received, "the first touch")
        assert subject(got.raw) == "Your demo, edited, Ada"
    finally:
        assert daemon.stop() == 0
