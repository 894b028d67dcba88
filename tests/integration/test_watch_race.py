"""The race (issue 4, item 5): a reply the watcher has seen must stop a send due at the same
moment. For each of many leads, a claimed touch is about to be sent (SendDue.process over real
SMTP to the sink) while handle_inbound records that lead's reply; both start together from
a barrier, in two threads, on SQLite and on PostgreSQL.

The guarantee checked: whatever the interleaving, nothing is sent that had not already begun
(`sending`, or sent) when the reply's transaction committed. A touch that reached the sink is
either named `in_flight` by the reply, or its touch_sent event precedes the reply's; a touch
that did not is skipped, and the enrollment is handed off either way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import Handled, HandleInbound, InboundSettings
from engine.services.send_due import PassReport
from engine.store.tables import Event
from engine.testing import RawMail
from tests.servers.engine_env import Env, make_env, sequence, smtp_sender
from tests.servers.smtp_sink import SmtpSink

LEADS = 24
STAGGERS = [i / 2000 for i in range(-6, 7, 2)]  # -3 ms .. +3 ms: not a wait, a sweep
THREE_STEPS = [  # the raced step is the second: the enrollment is still live after it
    {"name": "first", "after": "0m", "send_window": "any", "email": {"template": "hello.md.j2"}},
    {"name": "second", "after": "1 day", "send_window": "any",
     "email": {"template": "again.md.j2", "thread": "previous"}},
    {"name": "third", "after": "1 day", "send_window": "any", "email": {"template": "third.md.j2"}},
]
T = TypeVar("T")



@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop in a thread for the sender side (its SMTP pool lives on it)."""
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(timeout=10)
    lp.close()


def on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)


def reply(email: str, to_message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = email, "sales@acme.test", "Re: Hello"
    msg["Message-ID"], msg["In-Reply-To"] = f"<re.{email}>", to_message_id
    msg.set_content("Yes, let's talk.\n")
    return msg.as_bytes()


def send_everything_due(env: Env, loop: asyncio.AbstractEventLoop) -> None:
    while on(loop, env.send.run_pass()).claimed:
        pass


def event_id(env: Env, kind: str, lead_id: int, **match: Any) -> int | None:
    ev = Event.__table__
    with env.store.db.read() as conn:
        rows = conn.execute(select(ev.c.id, ev.c.data).where(
            ev.c.kind == kind, ev.c.lead_id == lead_id).order_by(ev.c.id)).all()
    return next((r.id for r in rows if all(r.data.get(k) == v for k, v in match.items())), None)


def race(env: Env, loop: asyncio.AbstractEventLoop, handle: HandleInbound, claim: Any,
         raw: RawMail, stagger: float) -> Handled:
    """Start the send and the reply together; return what the reply did.

    `stagger` (seconds) holds one side back a little after the barrier, sweeping the
    interleavings from "reply well first" to "send well first" (negative: the send waits).
    """
    start = threading.Barrier(2)
    done: dict[str, Handled] = {}
    errors: list[BaseException] = []

    def sending() -> None:
        try:
            start.wait()
            time.sleep(max(-stagger, 0))
            on(loop, env.send.process(claim, PassReport()))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    reading = handle.read(raw.raw)  # parsed beforehand: both sides start with a transaction

    def replying() -> None:
        try:
            start.wait()
            time.sleep(max(stagger, 0))
            done["reply"] = handle.record(raw, reading)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=sending), threading.Thread(target=replying)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return done["reply"]


def test_a_reply_racing_a_due_send_stops_everything_not_yet_sending(
        tmp_path: Path, db_url: str, loop: asyncio.AbstractEventLoop) -> None:
    """Many leads, each a real race between begin_send + SMTP and handle_inbound."""
    with SmtpSink() as sink:
        env = make_env(tmp_path, [sequence(steps=THREE_STEPS)], url=db_url,
                       sender=smtp_sender(sink.port))
        emails = [f"lead{i}@example.com" for i in range(LEADS)]
        for email in emails:
            env.enroll(email)
        send_everything_due(env, loop)
        first = {m.rcpt[0]: m.message_id for m in sink.wait_for(LEADS)}
        env.clock.advance(days=1)
        claims = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), LEADS,
                                           timedelta(seconds=60), env.send._planner("sales"))
        assert len(claims) == LEADS
        handle = HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                               InboundSettings("UTC", ("alice",)))
        outcomes: Counter[str] = Counter()
        for uid, claim in enumerate(claims, start=1):
            email = env.store.leads.get_by_id(claim.lead_id).email  # type: ignore[union-attr]
            stagger = STAGGERS[uid % len(STAGGERS)]
            done = race(env, loop, handle, claim, RawMail(reply(email, first[email]), uid), stagger)
            touch = {t.id: t for t in env.touches()}[claim.touch_id]
            at_sink = [m for m in sink.received if m.message_id == claim.message_id]
            report = env.store.reports.lead(email)
            assert report is not None and report.enrollments[0]["state"] == "handed_off"
            assert touch.state in ("sent", "skipped"), touch
            assert len(at_sink) == (1 if touch.state == "sent" else 0)
            if touch.state == "sent":
                sent_event = event_id(env, "touch_sent", claim.lead_id, touch_id=touch.id)
                reply_event = event_id(env, "reply_detected", claim.lead_id)
                assert claim.touch_id in done.in_flight or (
                    sent_event is not None and reply_event is not None
                    and sent_event < reply_event), (done, sent_event, reply_event)
                outcomes["in SMTP at the reply" if claim.touch_id in done.in_flight
                         else "sent before the reply"] += 1
            else:
                outcomes["stopped by the reply"] += 1
        on(loop, env.sender.close())
        assert sum(outcomes.values()) == LEADS
        print(f"\nrace outcomes on {db_url.split(':')[0]}: {dict(outcomes)}")
