"""`nurture send-test`: one step rendered for the sequence's sample lead, sent to an address of
the marketer's choosing, and recorded nowhere (no lead, no touch, no event)."""

from __future__ import annotations

from engine.domain.context import sample_lead
from engine.domain.correlation import domain_of, mint_message_id
from engine.domain.lead import LeadRecord
from engine.domain.touch import Claim, SendContext
from engine.errors import InvalidTransition, NotFound
from engine.services.enroll import normalise_email
from engine.services.messages import MessageMaker
from engine.services.ports import Catalog, Clock, Sender
from engine.settings import MailboxConfig


async def send_test(catalog: Catalog, maker: MessageMaker, sender: Sender, clock: Clock,
                    mailboxes: dict[str, MailboxConfig], sequence: str, step_name: str,
                    to: str) -> str:
    """Send the step to `to`; returns the Message-ID used."""
    seq = catalog.get(sequence)
    try:
        index = [s.name for s in seq.steps].index(step_name)
    except ValueError:
        names = ", ".join(s.name for s in seq.steps)
        raise NotFound(
            f"sequence '{sequence}' has no step '{step_name}' (steps: {names})") from None
    step = seq.steps[index]
    if step.email is None:
        raise InvalidTransition(f"step '{step_name}' is a {step.channel} task: there is "
                                "no email to send")
    if seq.mailbox not in mailboxes:
        raise NotFound(f"sequence '{sequence}' sends from mailbox '{seq.mailbox}', which "
                       "nurture.yaml does not configure")
    mbox = mailboxes[seq.mailbox]
    data = sample_lead(seq.sample_lead)
    data["email"] = normalise_email(to)
    lead = LeadRecord(id=0, **{k: data[k] for k in (
        "email", "first_name", "last_name", "company", "stage", "timezone", "owner", "source",
        "fields")})
    now = clock.now()
    message_id = mint_message_id(domain_of(mbox.address), 0, index, 0)
    claim = Claim(0, 0, 0, 0, seq.name, index, 0, index + 1, "email", seq.mailbox,
                  message_id, 0, now)
    ctx = SendContext(claim, lead, now, None)
    mail = maker.email(seq, step, mbox, ctx, maker.context(seq, step, mbox, ctx, now), now)
    await sender.send(seq.mailbox, mail.sender, lead.email, mail.raw)
    return message_id
