"""A reply that arrives while the database is away is not lost, and the daemon itself rides
out the outage: real Dovecot, real PostgreSQL. The test's own database refuses connections
for a while (ALLOW_CONNECTIONS false, its sessions terminated), which is what a restart or a
failover looks like to the daemon; the shared server keeps running. The watcher retries the
reply with backoff and, once the database answers, the sequence stops and the handoff opens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from engine.app import App
from engine.daemon.runner import Daemon
from engine.daemon.watchers import Watchers
from engine.settings import MailboxConfig, RepConfig, Settings, SmtpConfig
from tests.conftest import PG_ADMIN_URL, _pg_connect
from tests.servers import polling
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot
from tests.servers.smtp_sink import SmtpSink
from tests.servers.trial import write_trial

pytestmark = [pytest.mark.dovecot, pytest.mark.postgres, pytest.mark.slow]
WAIT = 40.0  # upper bound (the service's own quick retries take ~4 s); waits end at once
PASSWORD_ENV = "TEST_IMAP_PASSWORD"
@pytest.fixture
def app(tmp_path: Path, pg_url: str, dovecot: Dovecot,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    sequences, templates = write_trial(tmp_path)
    with SmtpSink() as sink:
        app = App(Settings(
            database_url=pg_url, sequences_dir=sequences, templates_dir=templates,
            secret_key="test-secret",
            base_url="https://nurture.test", postal_address="1 Main St",
            mailboxes={"sales": MailboxConfig(
                address=DEFAULT_USER, from_name="Sam Rivera",
                smtp=SmtpConfig(host="127.0.0.1", port=sink.port, tls="none", timeout=5),
                imap=dovecot.imap_config(password_env=PASSWORD_ENV, idle_renew_seconds=5),
            )},
            reps=[RepConfig(name="alice", email="alice@reps.test")],
        ))
        app.store.db.upgrade()
        app.sink = sink  # type: ignore[attr-defined]
        try:
            yield app
        finally:
            app.store.close()


def database_away(pg_url: str, away: bool) -> None:
    """Refuse (or allow again) new connections to the test's database; drop its sessions."""
    name = pg_url.rsplit("/", 1)[1]
    with _pg_connect(PG_ADMIN_URL) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not away).lower()}')
        if away:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def reply_to(message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Ada <ada@example.com>", DEFAULT_USER, "Re: trial"
    msg["Message-ID"] = f"<reply.{time.monotonic_ns()}@example.com>"
    msg["In-Reply-To"] = msg["References"] = message_id
    msg.set_content("Yes, call me on Tuesday.\n")
    return bytes(msg)


async def until(condition: Callable[[], Any]) -> Any:
    return await polling.until(condition, WAIT, every=0.05)


def test_a_reply_during_a_database_outage_hands_off_once_it_is_back(
        app: App, pg_url: str, dovecot: Dovecot) -> None:
    """The reply lands while the database refuses connections: the watcher retries it (no
    skipped message), and when the database is back the enrollment is handed off."""
    app.enroller().enroll("trial", "ada@example.com", {"first_name": "Ada"})
    asyncio.run(Daemon(app).run_once())
    [touch] = app.sink.received  # type: ignore[attr-defined]
    watchers = Watchers(app)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watchers.run("sales", stop))
        try:
            await until(lambda: "INBOX" in watchers.status().get("sales", _Nothing).last_uid)
            await asyncio.to_thread(database_away, pg_url, True)
            await asyncio.to_thread(dovecot.append, DEFAULT_USER, "INBOX",
                                    reply_to(touch.message_id))
            await until(lambda: watchers.status()["sales"].retrying_since is not None)
            await asyncio.to_thread(database_away, pg_url, False)
            await until(lambda: app.store.handoffs.list())
            await until(lambda: watchers.status()["sales"].retrying_since is None)
        finally:
            stop.set()
            await task
            await app.sender.close()  # the rep's notification used it on this loop

    asyncio.run(scenario())
    status = watchers.status()["sales"]
    assert status.handle_failures == 0 and status.handle_retries >= 1
    [h] = app.store.handoffs.list()
    assert (h.email, h.state) == ("ada@example.com", "open")
    report = app.store.reports.lead("ada@example.com")
    assert report is not None and report.enrollments[-1]["state"] == "handed_off"


def test_the_daemon_rides_out_a_database_outage(app: App, pg_url: str) -> None:
    """The database refuses connections while a real daemon runs (send passes and heartbeats
    fail meanwhile): the daemon keeps running and, once the database is back, sends the next
    lead's email. It used to stop with exit 1 at the first failed pass, dropping the touch
    outcomes it held in memory."""
    sink = app.sink  # type: ignore[attr-defined]

    async def scenario() -> None:
        daemon = Daemon(app)
        daemon.heartbeat.interval = 0.2
        run = asyncio.create_task(daemon.run())
        enroll = app.enroller(daemon.wake).enroll
        try:
            await asyncio.to_thread(enroll, "trial", "ada@example.com", {"first_name": "Ada"})
            await until(lambda: len(sink.received) == 1)
            await asyncio.to_thread(database_away, pg_url, True)
            daemon.wake()
            await until(lambda: daemon.dispatcher.failing_since is not None)
            await asyncio.sleep(1.0)  # several failed passes and heartbeats
            assert not run.done()
            await asyncio.to_thread(database_away, pg_url, False)
            await until(lambda: daemon.dispatcher.failing_since is None)
            await asyncio.to_thread(enroll, "trial", "bob@example.com", {"first_name": "Bob"})
            await until(lambda: len(sink.received) == 2)
            assert not run.done()
        finally:
            daemon.stop.set()
            await run
        assert [m.rcpt for m in sink.received] == [("ada@example.com",), ("bob@example.com",)]

    asyncio.run(scenario())


class _Nothing:
    last_uid: dict[str, int] = {}
