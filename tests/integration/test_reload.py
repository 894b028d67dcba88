"""Sequence reload inside a running daemon: real SQLite file, real aiosmtpd sink, the daemon's
own tasks on this test's loop. SIGHUP picks up an edited template; a sequence broken by a
reload is held (its enrollments stay due) and sent once fixed; a deleted one is left due and
reported; --reload-sequences notices new files by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from engine.app import App
from engine.daemon.reload import Reloader, add_reload
from engine.daemon.runner import Daemon
from engine.settings import MailboxConfig, Settings, SmtpConfig
from engine.testing import FrozenClock
from tests.servers import polling
from tests.servers.smtp_sink import Received, SmtpSink

WAIT = 20.0  # upper bound; every wait ends as soon as its condition holds
FOOTER = "\n{{ sender.postal_address }} <{{ unsubscribe_url }}>\n"
ALPHA = """\
name: alpha
mailbox: sales
timezone: UTC
send_window: any
jitter: 0m
steps:
  - name: hello
    after: 0m
    email: {template: hello.md.j2}
  - name: later
    after: 1 day
    email: {template: later.md.j2}
"""
BETA = ALPHA.replace("name: alpha", "name: beta").split("  - name: later")[0]


def subject(msg: Received) -> str:
    return str(message_from_bytes(msg.raw, policy=policy.default)["Subject"])


@dataclass
class Rig:
    app: App
    daemon: Daemon
    reloader: Reloader
    sink: SmtpSink
    clock: FrozenClock
    root: Path

    def enroll(self, sequence: str, email: str) -> None:
        self.app.enroller(self.daemon.wake).enroll(sequence, email, {"first_name": "Ada"})

    def to(self, address: str) -> list[Received]:
        return [m for m in self.sink.received if address in m.rcpt]

    def write(self, relative: str, text: str) -> None:
        (self.root / relative).write_text(text)

    def enrollment(self, email: str) -> dict[str, Any]:
        report = self.app.store.reports.lead(email)
        assert report is not None
        return report.enrollments[-1]


@pytest.fixture
def make_rig(tmp_path: Path, sink: SmtpSink) -> Iterator[Callable[..., Rig]]:
    apps: list[App] = []

    def make(watch: bool = False) -> Rig:
        for d in ("sequences", "templates"):
            (tmp_path / d).mkdir(exist_ok=True)
        (tmp_path / "sequences" / "alpha.yaml").write_text(ALPHA)
        (tmp_path / "sequences" / "beta.yaml").write_text(BETA)
        (tmp_path / "templates" / "hello.md.j2").write_text(
            '---\nsubject: "Hello v1"\n---\nHi {{ lead.first_name }}\n' + FOOTER)
        (tmp_path / "templates" / "later.md.j2").write_text(
            '---\nsubject: "Later"\n---\nStill there?\n' + FOOTER)
        app = App(Settings(
            database_url=f"sqlite:///{tmp_path / 'nurture.db'}",
            sequences_dir=tmp_path / "sequences", templates_dir=tmp_path / "templates",
            secret_key="test-secret", base_url="https://nurture.test", heartbeat_seconds=1,
            postal_address="1 Main St",
            mailboxes={"sales": MailboxConfig(
                address="sales@acme.test", from_name="Sam",
                smtp=SmtpConfig(host="127.0.0.1", port=sink.port, tls="none", timeout=5))},
        ))
        clock = FrozenClock(datetime.now(UTC))
        app.clock = clock  # before any service is built: the daemon's time is the test's
        app.store.db.upgrade()
        apps.append(app)
        daemon = Daemon(app)
        reloader = add_reload(daemon, watch=watch, poll=0.05)
        return Rig(app, daemon, reloader, sink, clock, tmp_path)

    yield make
    for app in apps:
        app.store.close()


@asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    task = asyncio.create_task(rig.daemon.run())
    try:
        await until(lambda: rig.daemon.dispatcher._loop is not None or task.done())
        if task.done():
            task.result()
        yield rig
    finally:
        rig.daemon.stop.set()
        await task


async def until(condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    return await polling.until(condition, timeout)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_sighup_reloads_an_edited_template(make_rig: Callable[..., Rig]) -> None:
    """The touch after SIGHUP carries the edited subject; the one before, the old one."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            await asyncio.to_thread(rig.enroll, "beta", "ada@example.com")
            [first] = await until(lambda: rig.to("ada@example.com"))
            rig.write("templates/hello.md.j2",
                      '---\nsubject: "Hello v2"\n---\nHi again\n' + FOOTER)
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: rig.reloader.reloads == 1)
            await asyncio.to_thread(rig.enroll, "beta", "bob@example.com")
            [second] = await until(lambda: rig.to("bob@example.com"))
            assert (subject(first), subject(second)) == ("Hello v1", "Hello v2")
    asyncio.run(scenario())


def test_a_sequence_broken_by_a_reload_is_held_and_sent_once_fixed(
        make_rig: Callable[..., Rig]) -> None:
    """Broken: sequence_problem with file:line, its due step waits while the other sequence
    sends; fixed: the waiting step goes out on that reload."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            await asyncio.to_thread(rig.enroll, "alpha", "ada@example.com")
            await until(lambda: rig.to("ada@example.com"))
            rig.write("sequences/alpha.yaml", ALPHA.replace("after: 1 day", "after: one day"))
            with capture_logs() as logs:
                change = await rig.reloader.reload()
            assert change is not None and change.broken == ["alpha"]
            [problem] = events(logs, "sequence_problem")
            assert problem["problem"].startswith(f"{rig.root / 'sequences/alpha.yaml'}:11: ")
            [waiting] = events(logs, "sequence_unavailable")
            assert (waiting["sequence"], waiting["enrollments_waiting"]) == ("alpha", 1)
            rig.clock.advance(days=2)  # alpha's second step is due now
            await asyncio.to_thread(rig.enroll, "beta", "bob@example.com")
            await until(lambda: rig.to("bob@example.com"))  # a pass ran after the advance
            assert len(rig.to("ada@example.com")) == 1
            assert rig.enrollment("ada@example.com")["state"] == "active"
            rig.write("sequences/alpha.yaml", ALPHA)
            await rig.reloader.reload()
            await until(lambda: len(rig.to("ada@example.com")) == 2)
            assert subject(rig.to("ada@example.com")[1]) == "Later"
    asyncio.run(scenario())


def test_a_deleted_sequence_leaves_its_enrollments_due_and_says_so(
        make_rig: Callable[..., Rig]) -> None:
    """No crash, no spin, no stop: the enrollment stays active and due, reported once."""
    rig = make_rig()

    async def scenario() -> None:
        async with running(rig):
            await asyncio.to_thread(rig.enroll, "alpha", "ada@example.com")
            await until(lambda: rig.to("ada@example.com"))
            (rig.root / "sequences" / "alpha.yaml").unlink()
            with capture_logs() as logs:
                change = await rig.reloader.reload()
            assert change is not None and change.removed == ["alpha"]
            [waiting] = events(logs, "sequence_unavailable")
            assert "no valid sequence file defines it" in waiting["reason"]
            rig.clock.advance(days=2)
            await asyncio.to_thread(rig.enroll, "beta", "bob@example.com")
            await until(lambda: rig.to("bob@example.com"))
            assert not rig.daemon.dispatcher.totals.get("blocked")
    asyncio.run(scenario())
    assert len(rig.to("ada@example.com")) == 1
    ada = rig.enrollment("ada@example.com")
    assert (ada["state"], ada["step_index"]) == ("active", 1)
    assert len(rig.app.store.reports.touches()) == 2  # ada's first, bob's: nothing claimed


def test_reload_sequences_notices_a_new_sequence_file(make_rig: Callable[..., Rig]) -> None:
    """Watching: a new file is loaded without a signal, and leads can be enrolled in it."""
    rig = make_rig(watch=True)

    async def scenario() -> None:
        async with running(rig):
            rig.write("sequences/gamma.yaml", BETA.replace("name: beta", "name: gamma"))
            await until(lambda: "gamma" in rig.app.catalog.sequences)
            await asyncio.to_thread(rig.enroll, "gamma", "cy@example.com")
            await until(lambda: rig.to("cy@example.com"))
    asyncio.run(scenario())


def test_reload_sequences_notices_a_file_written_before_the_watch_began(
        make_rig: Callable[..., Rig]) -> None:
    """Watching: a file written after the catalog was read but before the reload task took
    its first look is still loaded (the files are compared with what the catalog read)."""
    rig = make_rig(watch=True)
    assert "gamma" not in rig.app.catalog.sequences  # the catalog in use has been read
    rig.write("sequences/gamma.yaml", BETA.replace("name: beta", "name: gamma"))

    async def scenario() -> None:
        async with running(rig):
            await until(lambda: "gamma" in rig.app.catalog.sequences, timeout=5)
    asyncio.run(scenario())
