"""A reply committed while other emails of the pass are on the wire stops every email that has
not reached SMTP yet (issue 4's race), on the real store: a touch is begun (re-checked,
`sending`) only when an SMTP connection is free for it, never ahead of it."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest

from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.testing import FakeReply, FakeSender, RawMail
from tests.servers.engine_env import Env, make_env

LEADS = 8


class ReplyWhileSending(FakeSender):
    """A slow relay; during the first transaction every lead whose email is not being sent
    right now replies (their replies are committed before that transaction ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.env: Env | None = None
        self.in_flight_at_reply: set[str] = set()
        self.replied = False
        self.replies_committed = asyncio.Event()

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> FakeReply:
        if self.env is not None and not self.replied:
            self.replied = True  # once, during the pass's first SMTP transaction
            await asyncio.to_thread(self._everyone_else_replies, self.env)
            self.replies_committed.set()
        await asyncio.sleep(0.05)  # the relay's time: the other connection works meanwhile
        # ... but its transaction ends only after the replies are committed: what it begins
        # next is begun after them (otherwise it could beat a reply that is still on its way)
        await self.replies_committed.wait()
        return await super().send(mailbox, sender, recipient, raw)

    def _everyone_else_replies(self, env: Env) -> None:
        touches = env.touches()
        self.in_flight_at_reply = {t.email for t in touches if t.state == "sending"}
        inbound = HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                                InboundSettings("UTC", ("alice",)))
        for uid, t in enumerate(touches, start=1):
            if t.email in self.in_flight_at_reply:
                continue
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = t.email, "sales@acme.test", "Re: Hello"
            msg["Message-ID"] = f"<reply{uid}@example.com>"
            msg.set_content("Yes, let's talk. Tuesday?\n")
            assert inbound(RawMail(msg.as_bytes(), uid)).handoff is not None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    sender = ReplyWhileSending()
    built = make_env(tmp_path, url=url, sender=sender)
    sender.env = built
    return built


def test_only_the_emails_on_the_wire_leave_after_a_reply(env: Env) -> None:
    """Two SMTP connections: at most two emails were `sending` when the replies committed;
    those may leave, every other lead replied before its email was begun and gets none."""
    for i in range(LEADS):
        env.enroll(f"lead{i}@example.com", first_name="Lead")
    env.run_once()
    sender: ReplyWhileSending = env.sender
    sent_to = {m.recipient for m in sender.sent}
    assert sender.in_flight_at_reply, "the replies must arrive while an email is on the wire"
    assert len(sender.in_flight_at_reply) <= 2  # one per connection
    assert sent_to == sender.in_flight_at_reply
    firsts = [t for t in env.touches() if t.step == "first"]
    assert {t.email for t in firsts if t.state == "skipped"} == {
        f"lead{i}@example.com" for i in range(LEADS)} - sender.in_flight_at_reply
