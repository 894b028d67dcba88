"""What a claimed touch becomes: an email (rendered, threaded, stamped), a task, or a skip.

Runs inside the begin-send transaction, so it does no I/O: rendering and composing only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.domain.context import template_context
from engine.domain.correlation import references_after, reply_subject
from engine.domain.progress import index_of, upcoming, window_wait
from engine.domain.sequence import Sequence, Step
from engine.domain.touch import (
    Decision,
    Defer,
    Fail,
    OpenTask,
    Outbound,
    SendContext,
    SendEmail,
    Skip,
)
from engine.domain.unsubscribe_token import make_token
from engine.errors import RenderError, ScheduleError
from engine.services.planning import Planning
from engine.services.ports import Renderer
from engine.settings import MailboxConfig


@dataclass(frozen=True)
class MessageSettings:
    base_url: str
    secret_key: str
    unsubscribe_mailto: str = ""  # default: the mailbox's own address
    postal_address: str = ""


class MessageMaker:
    def __init__(self, renderer: Renderer, build: Callable[[Outbound], bytes],
                 planning: Planning, settings: MessageSettings) -> None:
        self.renderer, self.build, self.plan, self.settings = renderer, build, planning, settings

    def decide(self, seq: Sequence, mbox: MailboxConfig, ctx: SendContext,
               now: datetime) -> Decision:
        claim, lead = ctx.claim, ctx.lead
        wait = self.outside_window(seq, ctx, now)
        if wait is not None:
            return wait
        if ctx.raw:  # a retry: the very bytes of the first attempt
            return SendEmail(ctx.raw, mbox.address, lead.email, ctx.subject, ctx.text,
                             ctx.in_reply_to, ctx.references)
        index = index_of(seq, claim.step_name, claim.step_index)
        if index is None:  # an edit removed the step since the claim: the lead moves on
            return Skip(f"the sequence no longer has step '{claim.step_name}'",
                        self.plan.advance(seq, lead, claim.step_index, claim.occurrence, now,
                                          claim.step_name))
        step = seq.steps[index]
        if not step.applies_to(lead.condition_fields()):
            return Skip(f"`when: {step.when}` does not match the lead",
                        self.plan.advance(seq, lead, index, claim.occurrence, now, step.name))
        try:
            context = self.context(seq, step, mbox, ctx, now)
            if step.task is not None:
                return OpenTask(self.renderer.render_text(step.task.note, context,
                                                          f"{seq.name}: {step.name} note"))
            return self.email(seq, step, mbox, ctx, context, now)
        except (RenderError, ScheduleError) as exc:
            return Fail(exc.message)

    def outside_window(self, seq: Sequence, ctx: SendContext, now: datetime) -> Defer | None:
        """An email whose step has a send window waits for its next opening if `now` is
        outside it: due times honour windows, but a retry, a deferral over a mailbox pause,
        a backlog after an outage or a cron-hosted `run --once` can meet the touch at night."""
        claim = ctx.claim
        index = index_of(seq, claim.step_name, claim.step_index)
        if claim.channel != "email" or index is None:
            return None
        key = self.plan.key(ctx.lead.id, seq.name)
        until = window_wait(seq, index, claim.occurrence, now, self.plan.zone(seq, ctx.lead),
                            key)
        if until is None:
            return None
        return Defer(until, f"outside the send window of step '{seq.steps[index].name}'")

    def context(self, seq: Sequence, step: Step, mbox: MailboxConfig, ctx: SendContext,
                now: datetime) -> dict[str, Any]:
        lead, claim = ctx.lead, ctx.claim
        zone = self.plan.zone(seq, lead)
        nxt = upcoming(seq, seq.steps.index(step), claim.occurrence, now, zone,
                       self.plan.key(lead.id, seq.name), lead.condition_fields())
        return template_context(
            lead.as_mapping(), self.sender(mbox), seq, step, claim.touch_number,
            nxt.due_at if nxt else None, self.unsubscribe_url(lead.id, seq.name, lead.email),
            zone,
        )

    def sender(self, mbox: MailboxConfig) -> dict[str, str]:
        return {"name": mbox.from_name, "email": mbox.address, "signature": mbox.signature,
                "postal_address": self.settings.postal_address}

    def unsubscribe_url(self, lead_id: int, sequence: str, email: str) -> str:
        token = make_token(self.settings.secret_key, lead_id, sequence, email)
        return f"{self.settings.base_url.rstrip('/')}/u/{token}"

    def email(self, seq: Sequence, step: Step, mbox: MailboxConfig, ctx: SendContext,
               context: dict[str, Any], now: datetime) -> SendEmail:
        assert step.email is not None
        lead = ctx.lead
        rendered = self.renderer.render_email(step.email.template_for(lead.stage or None),
                                              context)
        subject, in_reply_to, references = rendered.subject, "", ""
        prev = ctx.previous if step.email.thread == "previous" else None
        if prev is not None:
            # A follow-up in the same thread: the previous subject with one "Re: ".
            subject = reply_subject(prev.subject)
            in_reply_to = prev.message_id
            references = references_after(prev.references, prev.message_id)
        raw = self.build(Outbound(
            from_addr=mbox.address, from_name=mbox.from_name, reply_to=mbox.reply_to,
            to_addr=lead.email, to_name=lead.name, subject=subject, text=rendered.text,
            html=rendered.html, message_id=ctx.claim.message_id, date=now,
            in_reply_to=in_reply_to, references=references,
            unsubscribe_url=context["unsubscribe_url"],
            unsubscribe_mailto=self.settings.unsubscribe_mailto or mbox.address,
            headers={"X-Nurture-Touch": str(ctx.claim.touch_id),
                     "X-Nurture-Lead": str(lead.id)},
        ))
        return SendEmail(raw, mbox.address, lead.email, subject, rendered.text,
                         in_reply_to, references)
