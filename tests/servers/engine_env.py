"""A sending engine for tests: a real database (SQLite file or PostgreSQL), sequences built in
Python, templates written to a directory, and a sender that is fake (in memory) or real (SMTP
to a sink). Services are wired exactly as engine/app.py wires them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.authoring.catalog import Catalog
from engine.authoring.templates import Renderer
from engine.domain.sequence import Sequence
from engine.mail.compose import message_bytes
from engine.mail.smtp import SmtpSender
from engine.services.enroll import Enroller
from engine.services.messages import MessageMaker, MessageSettings
from engine.services.planning import Planning
from engine.services.recover import Recovery
from engine.services.send_due import SendDue, SendSettings
from engine.services.tasks import Tasks
from engine.settings import MailboxConfig, SmtpConfig
from engine.store.store import Store
from engine.testing import FakeSender, FakeSentFolder, FrozenClock
from tests.servers.cleanup import close_after_test

SECRET = "test-secret-key"
TEMPLATES = {
    "hello.md.j2": "---\nsubject: \"Hello {{ lead.first_name }}\"\n---\n"
                   "Hi {{ lead.first_name }},\n\nA **short** note from {{ sender.name }}.\n\n"
                   "<{{ unsubscribe_url }}>\n",
    "again.md.j2": "---\nsubject: \"Second note\"\n---\nHi again {{ lead.first_name }}.\n",
    "third.md.j2": "---\nsubject: \"Third\"\n---\nThird note for {{ lead.email }}.\n",
}


def sequence(name: str = "welcome", steps: list[dict[str, Any]] | None = None,
             **extra: Any) -> Sequence:
    """A sequence from plain data; by default two emails a day apart, the second threaded."""
    steps = steps or [
        {"name": "first", "after": "0m", "send_window": "any",
         "email": {"template": "hello.md.j2"}},
        {"name": "second", "after": "1 day", "send_window": "any",
         "email": {"template": "again.md.j2", "thread": "previous"}},
    ]
    return Sequence.model_validate({"name": name, "mailbox": "sales", "timezone": "UTC",
                                    "jitter": "0m", "steps": steps, **extra})


def mailbox(port: int = 25, **smtp: Any) -> MailboxConfig:
    return MailboxConfig(
        address="sales@acme.test", from_name="Sam Rivera", signature="Sam",
        per_minute_limit=10_000, daily_limit=1_000_000,
        smtp=SmtpConfig(host="127.0.0.1", port=port, tls="none", timeout=5.0, **smtp),
    )


@dataclass
class Env:
    store: Store
    catalog: Catalog
    clock: FrozenClock
    sender: Any
    sent_copy: FakeSentFolder
    send: SendDue
    enroller: Enroller
    tasks: Tasks
    recovery: Recovery
    worker: str

    def enroll(self, email: str, seq: str = "welcome", **values: Any) -> Any:
        return self.enroller.enroll(seq, email, values)

    def run_once(self) -> Counter[str]:
        """Passes until nothing is due now (what `nurture run --once` does)."""
        totals: Counter[str] = Counter()

        async def go() -> None:
            try:
                while True:
                    report = await self.send.run_pass()
                    totals.update(report.counts)
                    if report.claimed == 0:
                        return
            finally:
                close = getattr(self.sender, "close", None)
                if close is not None:  # SMTP pools belong to this event loop
                    await close()
        asyncio.run(go())
        return totals

    def touches(self) -> list[Any]:
        return self.store.reports.touches()


def smtp_sender(port: int, **smtp: Any) -> SmtpSender:
    """The real sender, to a sink on 127.0.0.1:port."""
    return SmtpSender({"sales": mailbox(port, **smtp)}, lambda _name: "")


def make_env(tmp_path: Path, sequences: list[Sequence] | None = None, *,
             url: str | None = None, sender: Any = None, mbox: MailboxConfig | None = None,
             templates: dict[str, str] | None = None, worker: str = "w1",
             batch_size: int = 100) -> Env:
    tdir = tmp_path / "templates"
    tdir.mkdir(exist_ok=True)
    for name, text in {**TEMPLATES, **(templates or {})}.items():
        (tdir / name).write_text(text)
    store = Store(url or f"sqlite:///{tmp_path / 'nurture.db'}")
    close_after_test(store.close)
    store.db.upgrade()
    seqs = sequences or [sequence()]
    catalog = Catalog(sequences={s.name: s for s in seqs}, templates_dir=tdir)
    clock = FrozenClock()
    sender = sender if sender is not None else FakeSender()
    sent_copy = FakeSentFolder()
    mailboxes = {"sales": mbox or mailbox()}
    maker = MessageMaker(Renderer(tdir), message_bytes, Planning(catalog.sequences, "UTC"),
                         MessageSettings("https://nurture.test", SECRET,
                                         "unsubscribe@acme.test", "1 Main St"))
    send = SendDue(queue=store.queue, mailbox_store=store.mailboxes, catalog=catalog,
                   sender=sender, maker=maker, clock=clock, mailboxes=mailboxes,
                   settings=SendSettings(worker, batch_size, timedelta(seconds=60), "UTC"),
                   sent_copy=sent_copy)
    return Env(
        store=store, catalog=catalog, clock=clock, sender=sender, sent_copy=sent_copy,
        send=send, enroller=Enroller(store.leads, catalog, clock, "UTC"),
        tasks=Tasks(store.workers, catalog, clock, "UTC"),
        recovery=Recovery(store.workers, catalog, clock, "UTC", timedelta(seconds=30),
                          sent_copy),
        worker=worker,
    )
