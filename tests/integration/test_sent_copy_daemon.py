"""A daemon's send puts a copy in the mailbox's Sent folder: the real `nurture run --once`
process, a real aiosmtpd sink and a real Dovecot with `sent_folder` configured. The halves
(IMAP APPEND; the send path with a fake folder) are tested elsewhere; this joins them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot
from tests.servers.smtp_sink import SmtpSink

pytestmark = [pytest.mark.dovecot]
ROOT = Path(__file__).resolve().parents[2]
SEQUENCE = """\
name: trial
mailbox: sales
timezone: UTC
jitter: 0m
steps:
  - {name: hello, after: 0m, send_window: any, email: {template: hello.md.j2}}
  - {name: nudge, after: 2 days, send_window: any, email: {template: hello.md.j2}}
"""
TEMPLATE = ('---\nsubject: "Your trial"\n---\nHow is it going?\n\n'
            "{{ sender.postal_address }} <{{ unsubscribe_url }}>\n")


def nurture(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", NURTURE_SECRET_KEY="test-secret",
               TEST_IMAP_PASSWORD=DEFAULT_PASSWORD)
    return subprocess.run([sys.executable, "-c", "from engine.cli.main import main; main()",
                           *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_run_once_files_a_copy_of_the_email_in_sent(tmp_path: Path, sink: SmtpSink,
                                                    dovecot: Dovecot) -> None:
    """enroll, `run --once`: the sink has the email, and Dovecot's Sent holds one copy,
    flagged \\Seen, with the Message-ID the touch recorded and the same bytes."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "trial.yaml").write_text(SEQUENCE)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.md.j2").write_text(TEMPLATE)
    imap = dovecot.imap_config(password_env="TEST_IMAP_PASSWORD", sent_folder="Sent")
    (tmp_path / "nurture.yaml").write_text(json.dumps({
        "database_url": "sqlite:///nurture.db", "sequences_dir": "sequences",
        "templates_dir": "templates", "base_url": "https://nurture.test",
        "postal_address": "1 Main Street",
        "mailboxes": {"sales": {
            "address": DEFAULT_USER, "from_name": "Sam Rivera",
            "smtp": {"host": "127.0.0.1", "port": sink.port, "tls": "none", "timeout": 5},
            "imap": imap.model_dump(mode="json")}},
    }))
    for args in (("db", "upgrade"), ("enroll", "trial", "--email", "ada@example.com"),
                 ("run", "--once")):
        done = nurture(tmp_path, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    [sent] = sink.received
    with dovecot.client(DEFAULT_USER) as client:
        assert client.folder_exists("Sent")
        client.select_folder("Sent", readonly=True)
        uids = client.search(["HEADER", "Message-ID", sent.message_id])
        assert len(uids) == 1 and len(client.search(["ALL"])) == 1
        data = client.fetch(uids, [b"FLAGS", b"BODY.PEEK[]"])[uids[0]]
    assert b"\\Seen" in data[b"FLAGS"]
    assert data[b"BODY[]"].replace(b"\r\n", b"\n") == sent.raw.replace(b"\r\n", b"\n")
    lead = nurture(tmp_path, "lead", "ada@example.com").stdout
    assert sent.message_id in lead
