"""The promise, end to end through the CLI: a lead is enrolled, `nurture run` (a real process)
sends the first email, the lead answers into the watched mailbox (real Dovecot), the sequence
stops, the rep's email arrives (aiosmtpd sink), and the rep works the handoff with
`nurture handoffs` / `nurture handoff show|claim|resume`. SIGTERM ends the daemon cleanly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import Received, SmtpSink

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 30.0


@pytest.fixture
def project(tmp_path: Path, sink: SmtpSink, dovecot: Dovecot) -> Path:
    """The repo's sequences; mailbox `sales` sends to the sink and is watched in Dovecot."""
    (tmp_path / "nurture.yaml").write_text(f"""\
database_url: sqlite:///nurture.db
sequences_dir: {ROOT / 'sequences'}
templates_dir: {ROOT / 'templates'}
base_url: https://nurture.example.com
postal_address: Example Inc., 1 Main Street, Springfield
heartbeat_seconds: 1
http_port: 0
mailboxes:
  sales:
    address: {DEFAULT_USER}
    from_name: Sam Rivera
    smtp: {{host: 127.0.0.1, port: {sink.port}, tls: none, timeout: 5}}
    imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, tls: none, username: {DEFAULT_USER},
           password_env: TEST_IMAP_PASSWORD}}
reps:
  - {{name: alice, email: alice@reps.example.com}}
  - {{name: bob, email: bob@reps.example.com}}
""")
    return tmp_path


def nurture(*args: str, cwd: Path) -> str:
    done = subprocess.run(_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=_env(), check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from engine.cli.main import main; main()", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(COLUMNS="200", PYTHONPATH=str(ROOT), NURTURE_SECRET_KEY="acceptance-secret",
               TEST_IMAP_PASSWORD=DEFAULT_PASSWORD)
    return env


def wait_for(what: str, condition: Callable[[], object]) -> object:
    return wait_until(condition, WAIT, what, every=0.05)


def to(sink: SmtpSink, address: str) -> list[Received]:
    return [m for m in sink.received if address in m.rcpt]


def answer(first: Received) -> bytes:
    original = message_from_bytes(first.raw, policy=policy.default)
    msg = EmailMessage()
    msg["From"], msg["To"] = "Ada Lovelace <ada@example.com>", DEFAULT_USER
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Message-ID"] = "<answer.1@example.com>"
    msg["In-Reply-To"] = msg["References"] = first.message_id
    msg.set_content("Thursday at 10 works for us. Can you show the reporting side?\n\n"
                    "On Monday, Sam Rivera wrote:\n> Thanks for asking for a demo\n")
    return msg.as_bytes(policy=policy.SMTP)


def test_a_reply_stops_the_sequence_and_the_rep_takes_over(
        project: Path, sink: SmtpSink, dovecot: Dovecot) -> None:
    """enroll -> run -> reply in the inbox -> handed off, rep emailed -> claim -> resume."""
    nurture("db", "upgrade", cwd=project)
    daemon = subprocess.Popen(_cmd("run"), cwd=project, env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for("the watcher to start", lambda: watching(project))
        nurture("enroll", "demo-request", "--email", "ada@example.com", "--set",
                "first_name=Ada", "--set", "company=Analytical Engines", cwd=project)
        [first] = wait_for("the first touch", lambda: to(sink, "ada@example.com"))  # type: ignore[misc]
        dovecot.append(DEFAULT_USER, "INBOX", answer(first))
        [note] = wait_for("the rep's email", lambda: to(sink, "alice@reps.example.com"))  # type: ignore[misc]
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    body = message_from_bytes(note.raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "Thursday at 10 works for us. Can you show the reporting side?" in body
    assert "Thanks for asking for a demo" not in body  # the quoted thread is left out
    assert "https://nurture.example.com/reps/handoffs/1" in body

    listing = nurture("handoffs", "--state", "open", cwd=project)
    assert "ada@example.com" in listing and "alice" in listing and "demo-request" in listing
    shown = nurture("handoff", "show", "1", cwd=project)
    assert "Thursday at 10 works for us" in shown and "handed_off" in shown
    assert "claimed by bob" in nurture("handoff", "claim", "1", "--rep", "bob", cwd=project)
    assert "enrolled in ripen" in nurture("handoff", "resume", "1", "--sequence", "ripen",
                                          cwd=project)
    assert "closed (renurtured)" in nurture("handoffs", cwd=project)
    lead = nurture("lead", "ada@example.com", cwd=project)
    assert "handed_off replied" in lead and "ripen active" in lead
    assert len(to(sink, "ada@example.com")) == 1  # nothing after the reply


def test_a_wrong_move_is_a_clear_error(project: Path) -> None:
    """Closing a handoff that does not exist: one line, exit 1, no traceback."""
    nurture("db", "upgrade", cwd=project)
    done = subprocess.run(_cmd("handoff", "close", "9", "--outcome", "won"), cwd=project,
                          capture_output=True, text=True, timeout=60, env=_env(), check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no handoff with id 9" in done.stderr


def watching(project: Path) -> bool:
    """The watcher saved its first cursor: mail from now on is handed to the engine."""
    db = project / "nurture.db"
    with sqlite3.connect(db) as conn:
        return bool(conn.execute("SELECT count(*) FROM mailboxcursor").fetchone()[0])
