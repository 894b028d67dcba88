"""The engine sending over real SMTP to the aiosmtpd sink, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import update

from engine.services.send_due import PassReport
from engine.store.tables import Enrollment
from tests.servers.engine_env import Env, make_env, smtp_sender
from tests.servers.smtp_sink import Faults, SmtpSink


def engine(tmp_path: Path, sink: SmtpSink, url: str | None = None, **kw: object) -> Env:
    return make_env(tmp_path, url=url, sender=smtp_sender(sink.port), **kw)  # type: ignore[arg-type]


def test_a_touch_arrives_as_multipart_with_its_headers(tmp_path: Path, sink: SmtpSink,
                                                       db_url: str) -> None:
    """Received at the relay: envelope, multipart text+HTML, List-Unsubscribe, our ID."""
    env = engine(tmp_path, sink, db_url)
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    [got] = sink.wait_for(1)
    msg = message_from_bytes(got.raw, policy=policy.default)
    assert (got.mail_from, got.rcpt) == ("sales@acme.test", ("ada@example.com",))
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Unsubscribe"].startswith("<https://nurture.test/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got.message_id == env.touches()[0].message_id


def test_a_follow_up_is_threaded_over_the_wire(tmp_path: Path, sink: SmtpSink) -> None:
    """The second email answers the first: Re:, In-Reply-To, References."""
    env = engine(tmp_path, sink)
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    env.clock.advance(days=1)
    env.run_once()
    first, second = (message_from_bytes(m.raw, policy=policy.default) for m in sink.wait_for(2))
    assert second["Subject"] == "Re: Hello Ada"
    assert second["In-Reply-To"] == first["Message-ID"] == second["References"]


def test_a_4xx_is_retried_and_delivered_once(tmp_path: Path) -> None:
    """451 on the first attempt: retried after the backoff, one copy at the relay."""
    with SmtpSink(Faults(tempfail=1)) as sink:
        env = engine(tmp_path, sink)
        env.enroll("ada@example.com")
        env.run_once()
        assert sink.received == []
        env.clock.advance(minutes=1)
        env.run_once()
        assert len(sink.wait_for(1)) == 1 and env.touches()[0].state == "sent"


def test_a_5xx_recipient_is_suppressed(tmp_path: Path) -> None:
    """550 5.1.1 at RCPT: failed, suppressed as a hard bounce, never tried again."""
    with SmtpSink(Faults(reject=("gone@example.com",))) as sink:
        env = engine(tmp_path, sink)
        env.enroll("gone@example.com")
        env.run_once()
        env.clock.advance(days=2)
        env.run_once()
        assert sink.received == [] and sink.handler.refused["reject"] == 1
        assert env.store.leads.suppression("gone@example.com") == "hard_bounce"
        assert env.touches()[0].state == "failed"


def test_a_connection_dropped_mid_data_is_retried(tmp_path: Path, db_url: str) -> None:
    """The relay hangs up during DATA: retried with the same Message-ID, delivered once."""
    with SmtpSink(Faults(drop=1)) as sink:
        env = engine(tmp_path, sink, db_url)
        env.enroll("ada@example.com")
        env.run_once()
        env.clock.advance(minutes=1)
        env.run_once()
        [got] = sink.wait_for(1)
        assert sink.handler.attempts[got.message_id] == 2
        assert got.message_id == env.touches()[0].message_id


def test_stopping_between_claim_and_send_sends_nothing(tmp_path: Path, sink: SmtpSink,
                                                      db_url: str) -> None:
    """The race: a reply stops the enrollment after the claim; the relay gets nothing."""
    env = engine(tmp_path, sink, db_url)
    env.enroll("ada@example.com")
    [claim] = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10,
                                        timedelta(seconds=60), env.send._planner("sales"))
    with env.store.db.write() as conn:
        conn.execute(update(Enrollment.__table__).values(state="handed_off"))

    async def go() -> None:
        await env.send.process(claim, PassReport())
    import asyncio
    asyncio.run(go())
    assert sink.received == [] and sink.sessions == 0
    assert env.touches()[0].state == "skipped"


def test_a_faulty_relay_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """120 leads through temp failures, drops and rejections: each touch is delivered
    exactly once or failed with its reason."""
    faults = Faults(tempfail_rate=0.2, drop_rate=0.1, reject=("@bounce.example.com",), seed=7)
    with SmtpSink(faults) as sink:
        env = engine(tmp_path, sink)
        for i in range(120):
            env.enroll(f"l{i}@{'bounce.example.com' if i % 10 == 0 else 'example.com'}")
        for _ in range(12):
            env.run_once()
            env.clock.advance(minutes=30)
        touches = [t for t in env.touches() if t.step == "first"]
        received = [m.message_id for m in sink.received]
        assert len(received) == len(set(received))
        sent = {t.message_id for t in touches if t.state == "sent"}
        assert sent == set(received)
        failed = [t for t in touches if t.state == "failed"]
        assert len(failed) == 12 and all("5.1.1" in t.error for t in failed)
        assert len(sent) + len(failed) == 120
