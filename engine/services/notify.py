"""Telling a rep about a handoff: an email in their own inbox (the reply's new text, the lead's
fields and timeline, a link to the handoff page) and an optional JSON webhook for chat tools.

Runs after the handoff is committed. Failures are logged, never raised: the handoff exists
and is listed by `nurture handoffs` whatever happens to the notification.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from engine.domain.correlation import domain_of
from engine.domain.touch import Outbound
from engine.errors import NurtureError
from engine.services.handle_inbound import HandoffEvent
from engine.services.ports import Clock, MessageBuilder, Sender
from engine.settings import MailboxConfig, RepConfig

log = structlog.get_logger("nurture.notify")
WEBHOOK_TIMEOUT = 10.0
TIMELINE_LINES = 30  # the newest events; the page has the rest
SHOWN_FIELDS = ("email", "first_name", "last_name", "company", "stage", "timezone", "owner",
                "source")


class HandoffReader(Protocol):
    def detail(self, handoff_id: int) -> Any: ...


Poster = Callable[[str, dict[str, Any]], None]


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST JSON (stdlib; raises on a non-2xx answer or a network error)."""
    req = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "nurture"})
    with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT) as resp:  # noqa: S310 - configured URL
        resp.read()


@dataclass(frozen=True)
class NotifySettings:
    base_url: str
    mailboxes: Mapping[str, MailboxConfig]
    reps: Mapping[str, RepConfig]
    webhook: str = ""  # Settings.notify_webhook: every handoff


@dataclass
class Notified:
    emailed: str = ""  # the rep address the email went to
    webhooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Notifier:
    def __init__(self, reader: HandoffReader, sender: Sender, build: MessageBuilder,
                 clock: Clock, settings: NotifySettings, post: Poster = post_json) -> None:
        self.reader, self.sender, self.build, self.clock = reader, sender, build, clock
        self.settings, self.post = settings, post

    def link(self, handoff_id: int) -> str:
        return f"{self.settings.base_url.rstrip('/')}/reps/handoffs/{handoff_id}"

    async def notify(self, event: HandoffEvent) -> Notified:
        """Email the rep and call the webhooks; what was done and what failed."""
        done = Notified()
        try:
            detail = await asyncio.to_thread(self.reader.detail, event.handoff_id)
        except NurtureError as exc:
            done.errors.append(exc.message)
            log.error("handoff_notify_failed", handoff_id=event.handoff_id, error=exc.message)
            return done
        rep = self.settings.reps.get(detail.handoff.rep)
        await self._email(detail, rep, event, done)
        for url in dict.fromkeys(u for u in (self.settings.webhook, rep.webhook if rep else "")
                                 if u):
            await self._webhook(url, detail, event, done)
        log.info("rep_notified", handoff_id=event.handoff_id, rep=detail.handoff.rep,
                 emailed=done.emailed, webhooks=len(done.webhooks), errors=done.errors)
        return done

    async def _email(self, detail: Any, rep: RepConfig | None, event: HandoffEvent,
                     done: Notified) -> None:
        if rep is None or not rep.email:
            if detail.handoff.rep:
                done.errors.append(f"rep '{detail.handoff.rep}' has no email in the config")
            elif event.new:  # nobody to email: the operator's log says why (handoffs lists it)
                log.warning("handoff_unassigned", handoff_id=detail.handoff.id,
                            reason=detail.handoff.note)
            return
        name = self._mailbox(detail)
        if name is None:
            done.errors.append("no mailbox is configured to send the notification from")
            return
        mbox = self.settings.mailboxes[name]
        subject, body = rep_email(detail, self.link(detail.handoff.id), event.new)
        try:
            raw = self.build(Outbound(
                from_addr=mbox.address, from_name=mbox.from_name or "nurture", to_addr=rep.email,
                to_name=rep.name, reply_to=detail.lead.email, subject=subject, text=body,
                message_id=notification_id(mbox.address, detail.handoff.id),
                date=self.clock.now(),
                headers={"X-Nurture-Notification": "handoff",
                         "X-Nurture-Handoff": str(detail.handoff.id),
                         # RFC 3834: the rep's autoresponder must not answer it.
                         "Auto-Submitted": "auto-generated"},
            ))
            await self.sender.send(name, mbox.address, rep.email, raw)
        except NurtureError as exc:
            done.errors.append(f"email to {rep.email}: {exc.message}")
            return
        done.emailed = rep.email

    def _mailbox(self, detail: Any) -> str | None:
        """The mailbox the reply came to (the rep's thread lives there), else the first."""
        wanted = detail.reply.mailbox if detail.reply is not None else ""
        if wanted in self.settings.mailboxes:
            return str(wanted)
        return next(iter(self.settings.mailboxes), None)

    async def _webhook(self, url: str, detail: Any, event: HandoffEvent,
                       done: Notified) -> None:
        payload = webhook_payload(detail, self.link(detail.handoff.id), event.new)
        try:
            await asyncio.to_thread(self.post, url, payload)
        except Exception as exc:  # noqa: BLE001 - any network or HTTP failure: logged only
            done.errors.append(f"webhook {_safe(url)}: {exc}")
            return
        done.webhooks.append(url)


# --- what the rep reads (pure) ---------------------------------------------------------------

def notification_id(address: str, handoff_id: int) -> str:
    return f"<nurture-handoff.{handoff_id}.{secrets.token_hex(6)}@{domain_of(address)}>"


def who(detail: Any) -> str:
    lead = detail.lead
    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email
    return f"{name} ({lead.company})" if lead.company else name


def rep_email(detail: Any, link: str, new: bool) -> tuple[str, str]:
    """Subject and plain text of the rep's notification."""
    h, lead, reply = detail.handoff, detail.lead, detail.reply
    what = "replied" if new else "wrote again"
    subject = f"{who(detail)} {what}" + (f" to {h.sequence}" if h.sequence else "")
    lines = [f"{who(detail)} <{lead.email}> {what}.", ""]
    if reply is not None:
        lines += [f"Subject: {reply.subject or '(none)'}", ""]
        lines += [f"> {line}" if line else ">" for line in (reply.new_text or "(no text)")
                  .splitlines()]
        lines.append("")
    lines += [f"Handoff #{h.id}" + (f", assigned to {h.rep}" if h.rep else ", not assigned"),
              f"Open it: {link}",
              f"Or: nurture handoff claim {h.id} --rep {h.rep or 'NAME'}",
              "Reply to this email to answer the lead directly.", "", "The lead"]
    lines += [f"  {k}: {v}" for k, v in _fields(lead)]
    lines += ["", "Conversation"]
    lines += [f"  {_when(m.at)}  {'<-' if m.direction == 'in' else '->'} {m.subject or '-'}"
              f"  ({m.kind})" for m in detail.thread[-TIMELINE_LINES:]]
    lines += ["", "Timeline"]
    lines += [f"  {_when(t.at)}  {describe(t.kind, t.data)}"
              for t in detail.timeline[-TIMELINE_LINES:]]
    return subject, "\n".join(lines) + "\n"


def webhook_payload(detail: Any, link: str, new: bool) -> dict[str, Any]:
    """JSON for chat tools: `text` is what Slack, Mattermost and Teams show."""
    h, lead, reply = detail.handoff, detail.lead, detail.reply
    said = (reply.new_text if reply is not None else "").strip()
    quote = _chat_escaped(said[:500]) + ("..." if len(said) > 500 else "")
    text = (f"{_chat_escaped(who(detail))} {'replied' if new else 'wrote again'}"
            + (f" to {h.sequence}" if h.sequence else "")
            + (f", assigned to {h.rep}" if h.rep else "") + f": {link}")
    if quote:
        text += "\n> " + quote.replace("\n", "\n> ")
    return {
        "text": text, "handoff_id": h.id, "url": link, "rep": h.rep, "sequence": h.sequence,
        "new": new, "reply": said,
        "lead": {k: v for k, v in _fields(lead)},
    }


def _chat_escaped(text: str) -> str:
    """What a prospect wrote, as text in Slack / Mattermost markup: `<!channel>` would ping
    the whole channel and `<https://evil|Open in nurture>` show a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fields(lead: Any) -> list[tuple[str, str]]:
    out = [(k, str(getattr(lead, k))) for k in SHOWN_FIELDS if getattr(lead, k, "")]
    out += [(str(k), str(v)) for k, v in sorted(dict(lead.fields).items())]
    return out


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


_SAYS = {
    "enrolled": "enrolled in {sequence} ({source})",
    "touch_sent": "sent step {step}",
    "touch_skipped": "skipped step {step}: {reason}",
    "touch_failed": "step {step} failed: {error}",
    "task_opened": "task opened: {step}",
    "task_done": "task done: {step} by {by}",
    "inbound_received": "received: {classified} (matched by {matched_by})",
    "enrollment_stopped": "enrollment stopped: {reason}",
    "enrollment_paused": "paused until {until}",
    "enrollment_resumed": "resumed",
    "enrollment_finished": "finished its sequence",
    "reply_detected": "reply detected",
    "handoff_created": "handed off to {rep}",
    "handoff_reply": "wrote again on handoff {handoff_id}",
    "handoff_claimed": "claimed by {rep}",
    "handoff_closed": "handoff closed: {outcome}",
    "suppressed": "suppressed: {reason}",
}


def describe(kind: str, data: dict[str, Any]) -> str:
    """One timeline event in words."""
    pattern = _SAYS.get(kind)
    if pattern is None:
        return kind.replace("_", " ")
    try:
        return pattern.format(**{k: v for k, v in data.items() if v not in (None, "")})[:160]
    except KeyError:
        return kind.replace("_", " ")


def _safe(url: str) -> str:
    """A webhook URL without its path (chat webhooks carry their secret in it)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/..."
