"""Telling the rep (services/notify.py): the email in their inbox and the chat webhook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from engine.domain.lead import LeadRecord
from engine.errors import NotFound, TransientSendError
from engine.mail.compose import message_bytes
from engine.services.handle_inbound import HandoffEvent
from engine.services.notify import Notifier, NotifySettings, webhook_payload
from engine.settings import MailboxConfig, RepConfig
from engine.store.handoffs import (
    HandoffDetail,
    HandoffView,
    InboundView,
    ThreadItem,
    TimelineItem,
)
from engine.testing import FakeSender, FrozenClock

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEAD = LeadRecord(1, "ada@example.com", first_name="Ada", last_name="Lovelace",
                  company="Analytical Engines", stage="decision", fields={"plan": "pro"})


def detail(rep: str = "alice", new_text: str = "Yes, Tuesday works.\nBring pricing.") -> Any:
    return HandoffDetail(
        handoff=HandoffView(7, 1, LEAD.email, "Ada Lovelace", LEAD.company, "demo-request", rep,
                            "open", "", "", 3, AT, None, None),
        lead=LEAD,
        reply=InboundView(3, "sales", AT, LEAD.email, "Re: Your demo", "human_reply",
                          "a person's reply", new_text, "in-reply-to", "<r@example.com>"),
        thread=[ThreadItem(AT, "out", "Your demo", "Hi Ada", "email sent", 1),
                ThreadItem(AT, "in", "Re: Your demo", new_text, "human_reply", 3)],
        timeline=[TimelineItem(AT, "enrolled", {"sequence": "demo-request", "source": "api"}),
                  TimelineItem(AT, "handoff_created", {"rep": rep})],
    )


class Reader:
    def __init__(self, d: Any) -> None:
        self.d = d

    def detail(self, handoff_id: int) -> Any:
        if self.d is None:
            raise NotFound(f"no handoff with id {handoff_id}")
        return self.d


class Posts(list[tuple[str, dict[str, Any]]]):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    def __call__(self, url: str, payload: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("connection refused")
        self.append((url, payload))


def notifier(d: Any, sender: FakeSender | None = None, posts: Posts | None = None,
             webhook: str = "", rep_hook: str = "") -> tuple[Notifier, FakeSender, Posts]:
    sender = sender or FakeSender()
    posts = posts if posts is not None else Posts()
    settings = NotifySettings(
        "https://nurture.example.com/",
        {"sales": MailboxConfig(address="sales@acme.test", from_name="Acme Sales")},
        {"alice": RepConfig(name="alice", email="alice@acme.test", webhook=rep_hook)},
        webhook,
    )
    return Notifier(Reader(d), sender, message_bytes, FrozenClock(AT), settings, posts), \
        sender, posts


def test_the_rep_gets_an_email_with_the_reply_and_the_lead() -> None:
    """To the rep's own address, from the mailbox, answerable to the lead."""
    svc, sender, _ = notifier(detail())
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    [sent] = sender.sent
    msg = sent.message
    body = msg.get_content().replace("\r\n", "\n")
    assert done.emailed == "alice@acme.test" and done.errors == []
    assert (sent.mailbox, sent.sender, sent.recipient) == ("sales", "sales@acme.test",
                                                           "alice@acme.test")
    assert msg["Subject"] == "Ada Lovelace (Analytical Engines) replied to demo-request"
    assert msg["Reply-To"] == "ada@example.com"
    assert msg["X-Nurture-Notification"] == "handoff"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "> Yes, Tuesday works.\n> Bring pricing." in body
    assert "https://nurture.example.com/reps/handoffs/7" in body
    assert "plan: pro" in body and "enrolled in demo-request (api)" in body


def test_both_webhooks_get_json_with_a_text_field() -> None:
    """The global webhook and the rep's own, each once, with `text` chat tools show."""
    svc, _, posts = notifier(detail(), webhook="https://chat.example/hook/SECRET",
                             rep_hook="https://chat.example/alice")
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert [u for u, _ in posts] == ["https://chat.example/hook/SECRET",
                                     "https://chat.example/alice"]
    text = posts[0][1]["text"]
    assert text.startswith("Ada Lovelace (Analytical Engines) replied to demo-request, "
                           "assigned to alice: https://nurture.example.com/reps/handoffs/7")
    assert "> Yes, Tuesday works." in text and len(done.webhooks) == 2


def test_a_failing_webhook_is_reported_not_raised() -> None:
    """The chat tool is down: the email still goes, the error names the host only."""
    svc, sender, _ = notifier(detail(), posts=Posts(fail=True),
                              webhook="https://chat.example/hook/SECRET")
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert len(sender.sent) == 1 and done.webhooks == []
    assert done.errors == ["webhook https://chat.example/...: connection refused"]


def test_a_failing_smtp_relay_is_reported_not_raised() -> None:
    """The relay refuses: the webhook is still called and the error is kept."""
    sender = FakeSender(fail=lambda _: TransientSendError("451 try later", 451))
    svc, _, posts = notifier(detail(), sender=sender, webhook="https://chat.example/h")
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert done.emailed == "" and len(posts) == 1
    assert done.errors == ["email to alice@acme.test: 451 try later"]


def test_an_unassigned_handoff_only_goes_to_the_webhook() -> None:
    """No reps configured (rep ''): no email, no error, the team's webhook still fires."""
    svc, sender, posts = notifier(detail(rep=""), webhook="https://chat.example/h")
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert sender.sent == [] and len(posts) == 1 and done.errors == []


def test_a_rep_without_an_address_is_an_error_to_log() -> None:
    """owner: carol, but carol is not in the config: said plainly."""
    svc, sender, _ = notifier(detail(rep="carol"))
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert sender.sent == [] and done.errors == ["rep 'carol' has no email in the config"]


def test_a_second_reply_says_the_lead_wrote_again() -> None:
    """new=False: the subject and the webhook text say so."""
    svc, sender, _ = notifier(detail())
    asyncio.run(svc.notify(HandoffEvent(7, 4, False)))
    assert sender.sent[0].message["Subject"].endswith("wrote again to demo-request")
    assert webhook_payload(detail(), "u", False)["text"].startswith(
        "Ada Lovelace (Analytical Engines) wrote again")


def test_a_vanished_handoff_is_an_error_not_a_crash() -> None:
    """The reader fails: nothing is sent, the error is returned."""
    svc, sender, _ = notifier(None)
    done = asyncio.run(svc.notify(HandoffEvent(7, 3, True)))
    assert sender.sent == [] and done.errors == ["no handoff with id 7"]


def test_a_prospects_markup_reaches_the_chat_as_text() -> None:
    """A reply with `<!channel>` and a disguised link: escaped in `text` (Slack read them as a
    channel-wide ping and a link labelled 'Open in nurture'); `reply` keeps what was said."""
    said = "<!channel> please <https://evil.example/login|Open in nurture> & see"
    payload = webhook_payload(detail(new_text=said), "https://n.test/reps/7", True)
    assert "<!channel>" not in payload["text"] and "<https://evil" not in payload["text"]
    assert "&lt;!channel&gt; please &lt;https://evil.example/login|Open in nurture&gt; &amp; " \
           "see" in payload["text"]
    assert payload["reply"] == said
