"""`nurture run --once` reads replies before it sends: real Dovecot, real aiosmtpd sink, real
SQLite file; each run is a fresh App, as each cron run is a fresh process. A reply already in
the inbox stops the sequence before the next step can leave; an unreachable mailbox stops
the run before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from engine.app import App
from engine.daemon.runner import Daemon
from engine.daemon.watchers import Watchers
from engine.devservers.dovecot import free_port
from engine.errors import MailboxError
from engine.settings import MailboxConfig, RepConfig, Settings, SmtpConfig
from engine.testing import FrozenClock
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot
from tests.servers.smtp_sink import Received, SmtpSink

pytestmark = [pytest.mark.dovecot]
PASSWORD_ENV = "TEST_IMAP_PASSWORD"
SEQUENCE = """\
name: trial
mailbox: sales
owner: round-robin
timezone: UTC
send_window: any
jitter: 0m
steps:
  - name: hello
    after: 0m
    email: {template: hello.md.j2}
  - name: nudge
    after: 1 day
    email: {template: nudge.md.j2, thread: previous}
"""
FOOTER = "\n{{ sender.postal_address }} <{{ unsubscribe_url }}>\n"
TEMPLATES = {"hello.md.j2": '---\nsubject: "Your trial"\n---\nHow is it going?\n' + FOOTER,
             "nudge.md.j2": '---\nsubject: "Checking in"\n---\nAny questions?\n' + FOOTER}


@pytest.fixture
def make_app(tmp_path: Path, sink: SmtpSink, dovecot: Dovecot,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., App]]:
    """A fresh App per call on the same project and database, sharing one frozen clock."""
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    for d in ("sequences", "templates"):
        (tmp_path / d).mkdir()
    (tmp_path / "sequences" / "trial.yaml").write_text(SEQUENCE)
    for name, text in TEMPLATES.items():
        (tmp_path / "templates" / name).write_text(text)
    clock = FrozenClock(datetime.now(UTC))
    apps: list[App] = []

    def make(imap_port: int | None = None) -> App:
        app = App(Settings(
            database_url=f"sqlite:///{tmp_path / 'nurture.db'}",
            sequences_dir=tmp_path / "sequences", templates_dir=tmp_path / "templates",
            secret_key="test-secret", base_url="https://nurture.test", postal_address="1 Main",
            mailboxes={"sales": MailboxConfig(
                address=DEFAULT_USER, from_name="Sam Rivera",
                smtp=SmtpConfig(host="127.0.0.1", port=sink.port, tls="none", timeout=5),
                imap=dovecot.imap_config(password_env=PASSWORD_ENV,
                                         **({"port": imap_port} if imap_port else {})),
            )},
            reps=[RepConfig(name="alice", email="alice@reps.test")],
        ))
        app.clock = clock
        app.store.db.upgrade()
        apps.append(app)
        return app

    make.clock = clock  # type: ignore[attr-defined]
    yield make
    for app in apps:
        app.store.close()


def run_once(app: App) -> Counter[str]:
    """What `nurture run --once` does: catch up the mailboxes, then one send pass."""
    async def go() -> Counter[str]:
        return await Daemon(app).run_once(before=Watchers(app).catch_up_once)
    return asyncio.run(go())


def reply_to(msg: Received) -> bytes:
    answer = EmailMessage()
    answer["From"], answer["To"] = "Ada <ada@example.com>", DEFAULT_USER
    answer["Subject"] = "Re: Your trial"
    answer["Message-ID"] = make_msgid(domain="example.com")
    answer["In-Reply-To"] = answer["References"] = msg.message_id
    answer.set_content("Yes, let's talk on Tuesday.\n")
    return bytes(answer)


def to(sink: SmtpSink, address: str) -> list[Received]:
    return [m for m in sink.received if address in m.rcpt]


def test_a_reply_in_the_inbox_stops_the_sequence_before_the_next_step_is_sent(
        make_app: Callable[..., App], sink: SmtpSink, dovecot: Dovecot) -> None:
    """Run 1 sends the first touch; the reply lands; run 2 (next step due) hands the lead
    off and tells the rep, and the next step never leaves."""
    app = make_app()
    app.enroller().enroll("trial", "ada@example.com", {"first_name": "Ada"})
    assert run_once(app)["sent"] == 1
    [first] = to(sink, "ada@example.com")
    dovecot.append(DEFAULT_USER, "INBOX", reply_to(first))
    make_app.clock.advance(days=2)  # type: ignore[attr-defined]
    again = make_app()
    totals = run_once(again)
    assert totals["sent"] == 0
    assert len(to(sink, "ada@example.com")) == 1
    lead = again.store.reports.lead("ada@example.com")
    assert lead is not None
    assert (lead.enrollments[-1]["state"], lead.enrollments[-1]["stop_reason"]) == (
        "handed_off", "replied")
    assert len(to(sink, "alice@reps.test")) == 1


def test_an_unreachable_mailbox_stops_the_run_before_anything_is_sent(
        make_app: Callable[..., App], sink: SmtpSink) -> None:
    """A reply may be waiting there unseen: MailboxError naming the mailbox, nothing sent,
    the touch still due for the next run."""
    app = make_app(imap_port=free_port())
    app.enroller().enroll("trial", "ada@example.com", {"first_name": "Ada"})
    with pytest.raises(MailboxError, match="mailbox 'sales': cannot catch up on replies"):
        run_once(app)
    assert sink.received == []
    lead = app.store.reports.lead("ada@example.com")
    assert lead is not None and lead.enrollments[-1]["state"] == "active"
