"""Replies end to end inside the daemon: real Dovecot (IMAP IDLE, LMTP), the aiosmtpd sink,
a real database. Enroll -> first touch at the sink -> the reply lands in the mailbox ->
the watcher hands it to handle_inbound -> the sequence stops, the handoff opens and the rep's
email arrives at the sink. Also: out-of-office pause and resume, a bounce, Dovecot restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from engine.app import App
from engine.daemon.runner import Daemon
from engine.daemon.watchers import Watchers, add_watchers
from engine.settings import MailboxConfig, RepConfig, Settings, SmtpConfig
from engine.store.tables import Enrollment
from tests.servers import polling
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot
from tests.servers.smtp_sink import Received, SmtpSink

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
WAIT = 20.0  # upper bound; every wait ends as soon as its condition holds
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
TEMPLATES = {
    "hello.md.j2": '---\nsubject: "Your trial, {{ lead.first_name }}"\n---\n'
                   "Hi {{ lead.first_name }}, how is the trial going?\n\n"
                   "{% include '_footer.md.j2' %}\n",
    "nudge.md.j2": '---\nsubject: "Checking in"\n---\nAny questions?\n\n'
                   "{% include '_footer.md.j2' %}\n",
    "_footer.md.j2": "{{ sender.name }}\n{{ sender.postal_address }}\n<{{ unsubscribe_url }}>\n",
}


# --- the rig: project files, settings, the daemon on this test's event loop -----------------

def settings(tmp_path: Path, sink: SmtpSink, dovecot: Dovecot, url: str,
             **imap: Any) -> Settings:
    (tmp_path / "sequences").mkdir(exist_ok=True)
    (tmp_path / "sequences" / "trial.yaml").write_text(SEQUENCE)
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in TEMPLATES.items():
        (tmp_path / "templates" / name).write_text(text)
    return Settings(
        database_url=url, sequences_dir=tmp_path / "sequences",
        templates_dir=tmp_path / "templates", secret_key="test-secret",
        base_url="https://nurture.test", heartbeat_seconds=1, postal_address="1 Main St",
        mailboxes={"sales": MailboxConfig(
            address=DEFAULT_USER, from_name="Sam Rivera",
            smtp=SmtpConfig(host="127.0.0.1", port=sink.port, tls="none", timeout=5),
            imap=dovecot.imap_config(password_env=PASSWORD_ENV, **imap),
        )},
        reps=[RepConfig(name="alice", email="alice@reps.test")],
    )


@dataclass
class Rig:
    app: App
    daemon: Daemon
    watchers: Watchers
    sink: SmtpSink
    dovecot: Dovecot

    def enroll(self, email: str, **values: str) -> None:
        self.app.enroller(self.daemon.wake).enroll("trial", email, values)

    def enrollment(self, email: str) -> dict[str, Any]:
        report = self.app.store.reports.lead(email)
        assert report is not None
        return report.enrollments[-1]

    def to(self, address: str) -> list[Received]:
        return [m for m in self.sink.received if address in m.rcpt]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nurture.db'}"


@pytest.fixture
def make_rig(tmp_path: Path, dovecot: Dovecot, db_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    made: list[tuple[App, SmtpSink]] = []

    def make(url: str = db_url, **imap: Any) -> Rig:
        sink = SmtpSink().start()
        app = App(settings(tmp_path, sink, dovecot, url, **imap))
        app.store.db.upgrade()
        daemon = Daemon(app)
        made.append((app, sink))
        return Rig(app, daemon, add_watchers(daemon), sink, dovecot)

    yield make
    for app, sink in made:
        sink.stop()
        app.store.close()


@asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    """The daemon's run() as a task of this loop, ready when the watcher has its cursor."""
    task = asyncio.create_task(rig.daemon.run())
    try:
        await until(lambda: _ready(rig) or task.done())
        if task.done():
            task.result()
        yield rig
    finally:
        rig.daemon.stop.set()
        await task


def _ready(rig: Rig) -> bool:
    w = rig.watchers.status().get("sales")
    return w is not None and w.connected and "INBOX" in w.last_uid


async def until(condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    return await polling.until(condition, timeout)


def reply(to_message: Received, body: str = "Yes! Can we talk on Tuesday?",
          frm: str = "ada@example.com", **headers: str) -> bytes:
    original = message_from_bytes(to_message.raw, policy=policy.default)
    msg = EmailMessage()
    msg["From"], msg["To"] = f"Ada <{frm}>", DEFAULT_USER
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Message-ID"] = f"<reply.{time.monotonic_ns()}@example.com>"
    msg["In-Reply-To"] = msg["References"] = to_message.message_id
    msg["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{body}\n\nOn Monday Sam Rivera wrote:\n> Hi Ada\n")
    return msg.as_bytes(policy=policy.SMTP)


async def first_touch(rig: Rig, email: str = "ada@example.com") -> Received:
    await asyncio.to_thread(rig.enroll, email, first_name="Ada")
    [got] = await until(lambda: rig.to(email))
    return got


# --- the tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_appended_reply_halts_the_sequence_and_tells_the_rep(
        make_rig: Callable[..., Rig], db: str, request: pytest.FixtureRequest) -> None:
    """APPEND to INBOX: handed off, a handoff for alice, her email at the sink, and the next
    step never leaves."""
    url = request.getfixturevalue("pg_url") if db == "postgres" else None
    rig = make_rig(url) if url else make_rig()

    async def scenario() -> None:
        async with running(rig):
            touch = await first_touch(rig)
            await asyncio.to_thread(rig.dovecot.append, DEFAULT_USER, "INBOX", reply(touch))
            await until(lambda: rig.enrollment("ada@example.com")["state"] == "handed_off")
            [note] = await until(lambda: rig.to("alice@reps.test"))
            body = message_from_bytes(note.raw, policy=policy.default).get_body(("plain",))
            assert "Yes! Can we talk on Tuesday?" in body.get_content()
            assert "https://nurture.test/reps/handoffs/1" in body.get_content()
    asyncio.run(scenario())
    [h] = rig.app.store.handoffs.list()
    assert (h.email, h.rep, h.state) == ("ada@example.com", "alice", "open")
    assert rig.enrollment("ada@example.com")["stop_reason"] == "replied"


def test_a_reply_delivered_over_lmtp_halts_the_sequence(make_rig: Callable[..., Rig]) -> None:
    """The path a real MTA takes (swaks -> Dovecot LMTP -> INBOX) works the same."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            touch = await first_touch(rig)
            await asyncio.to_thread(rig.dovecot.deliver_lmtp, DEFAULT_USER, reply(touch),
                                    "ada@example.com")
            await until(lambda: rig.enrollment("ada@example.com")["state"] == "handed_off")
            await until(lambda: rig.to("alice@reps.test"))
    asyncio.run(scenario())
    assert [h.email for h in rig.app.store.handoffs.list()] == ["ada@example.com"]


def test_an_out_of_office_pauses_and_the_sequence_resumes(make_rig: Callable[..., Rig]) -> None:
    """An auto-reply pauses the enrollment (no handoff); when the pause ends the next step
    goes out. The pause's end is moved to now in the database instead of waiting days."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            touch = await first_touch(rig)
            ooo = reply(touch, "I am out of the office until next week.",
                        Auto_Submitted="auto-replied")
            await asyncio.to_thread(rig.dovecot.append, DEFAULT_USER, "INBOX", ooo)
            await until(lambda: rig.enrollment("ada@example.com")["state"] == "paused")
            assert rig.app.store.handoffs.list() == []
            await asyncio.to_thread(_end_pause_now, rig)
            await until(lambda: len(rig.to("ada@example.com")) == 2)
    asyncio.run(scenario())
    assert rig.enrollment("ada@example.com")["state"] in ("active", "finished")


def _end_pause_now(rig: Rig) -> None:
    e = Enrollment.__table__
    past = rig.app.clock.now().replace(year=2000)
    with rig.app.store.db.write() as conn:
        conn.execute(update(e).values(paused_until=past, next_due_at=past))


def test_a_hard_bounce_suppresses_the_address(make_rig: Callable[..., Rig]) -> None:
    """A DSN (5.1.1) returning our touch: stopped as bounced, address suppressed."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            touch = await first_touch(rig)
            await asyncio.to_thread(rig.dovecot.append, DEFAULT_USER, "INBOX",
                                    bounce(touch.message_id, "ada@example.com"))
            await until(lambda: rig.app.store.leads.suppression("ada@example.com"))
    asyncio.run(scenario())
    assert rig.app.store.leads.suppression("ada@example.com") == "hard_bounce"
    assert rig.enrollment("ada@example.com")["stop_reason"] == "bounced"


def bounce(message_id: str, recipient: str) -> bytes:
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
            f"To: {DEFAULT_USER}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <bounce.{time.monotonic_ns()}@mx.example.com>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            f"--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n--B\r\n"
            f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com"
            f"\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\n"
            f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B\r\n"
            f"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n"
            f"To: {recipient}\r\n\r\n--B--\r\n").encode()


def test_the_watcher_survives_a_dovecot_restart_and_misses_nothing(
        make_rig: Callable[..., Rig]) -> None:
    """Replies appended just before Dovecot stops and right after it comes back are all
    handled, once each: the watcher reconnects and catches up by UID."""
    rig = make_rig()
    leads = [f"lead{i}@example.com" for i in range(4)]

    async def scenario() -> None:
        async with running(rig):
            touches = {e: await first_touch(rig, e) for e in leads}
            await asyncio.to_thread(rig.dovecot.append, DEFAULT_USER, "INBOX",
                                    reply(touches[leads[0]], frm=leads[0]))
            await asyncio.to_thread(rig.dovecot.stop)
            await until(lambda: not rig.watchers.status()["sales"].connected)
            await asyncio.to_thread(rig.dovecot.start)
            for e in leads[1:]:  # possibly before the watcher is back
                await asyncio.to_thread(rig.dovecot.append, DEFAULT_USER, "INBOX",
                                        reply(touches[e], frm=e))
            await until(lambda: all(rig.enrollment(e)["state"] == "handed_off" for e in leads))
    asyncio.run(scenario())
    assert sorted(h.email for h in rig.app.store.handoffs.list()) == leads
    assert rig.watchers.status()["sales"].reconnects >= 1
    with rig.app.store.db.read() as conn:
        from engine.store.tables import InboundMessage
        rows = conn.execute(select(InboundMessage.__table__.c.id)).all()
    assert len(rows) == len(leads)  # each reply recorded once


def test_a_dead_watcher_stops_the_daemon_loudly(make_rig: Callable[..., Rig]) -> None:
    """The cursor store failing ends the watcher thread; the daemon stops with TaskDied."""
    from engine.daemon.runner import TaskDied

    rig = make_rig()

    def broken(*_: object) -> None:
        raise RuntimeError("cursor table gone")
    rig.app.store.cursors.save = broken  # type: ignore[method-assign]
    with pytest.raises(TaskDied, match="watch:sales"):
        asyncio.run(rig.daemon.run())
