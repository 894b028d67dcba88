"""Unsubscribe requests written by a person: "unsubscribe", "remove me", "stop emailing me".

Read on the new text only (a quoted footer of ours says "unsubscribe" too), and only in a
short message: a long answer that also asks to be removed deserves a rep's eyes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.domain.inbound_mail import InboundMail

_MAX_WORDS = 40  # "Please take me off your list, thanks. John" is short; a real answer is not
_ASKS = re.compile(
    r"\bun-?subscribe\b|\bremove me\b|\bremove (?:my (?:e-?mail|address|name)|us)\b|"
    r"\btake (?:me|us|my (?:e-?mail|address)) off\b|\bopt (?:me|us) out\b|^\W*opt[- ]?out\W*$|"
    r"\bstop (?:e-?mailing|sending|contacting|writing|spamming|messaging)(?: (?:me|us)\b| "
    r"(?:these|your|the) (?:e-?mails|mails|messages)\b|\s*[.!]|\s*$)|"
    r"\b(?:do not|don'?t|never) (?:e-?mail|contact|write(?: to)?|message|send) (?:me|us)\b|"
    r"\bno (?:more|further) (?:e-?mails|emails|messages)\b|\bplease stop\s*(?:[.!]|$)|"
    # de / fr / es / nl / pt
    r"\babmelden\b|\babbestellen\b|\baustragen\b|\bentfernen sie mich\b|\bkeine (?:weiteren )?"
    r"(?:e-?mails|nachrichten|mails)\b|\bdésabonner\b|\bdésinscri(?:re|vez|ption)\b|"
    r"\bretirez[- ]moi\b|"
    r"\bne plus recevoir\b|\barrêtez de m'envoyer\b|\bdar(?:me)? de baja\b|\bdarse de baja\b|"
    r"\beliminarme\b|\bno (?:me )?(?:envíe|envie|envíen|mande)n?\b|\bno quiero recibir\b|"
    r"\buitschrijven\b|\bafmelden\b|\bverwijder (?:mij|me)\b|\bstop met (?:mailen|e-?mailen)\b|"
    r"\bdescadastr(?:ar|e)\b|\bcancelar (?:a )?inscrição\b|\bme remova\b|\bremover-me\b|"
    r"\bparar de enviar\b|\bnão quero receber\b",
    re.IGNORECASE | re.MULTILINE,
)
# Someone who names another person or address is redirecting us: a rep should read it.
_REFERRAL = re.compile(
    r"@|colleague|co-?worker|instead|in charge|responsible for|handles|kollege|collègue|"
    r"compañero|colega|collega",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"^\W*(?:un-?subscribe|remove(?: me)?|stop|opt[- ]?out|abmelden|austragen|désabonner|"
    r"désinscription|baja|darme de baja|uitschrijven|afmelden|descadastrar|cancelar)\W*$",
    re.IGNORECASE,
)
_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr|rv|res)\s*:\s*)+", re.IGNORECASE)


def unsubscribe_reason(mail: InboundMail, new_text: str) -> str | None:
    """Why this is a person's request to stop, or None."""
    if any(addr.split("@", 1)[0].startswith("unsubscribe") for addr in mail.to):
        return "sent to an unsubscribe address"
    subject = _PREFIX.sub("", mail.subject)
    if _SUBJECT.match(subject) and len(new_text.split()) <= _MAX_WORDS:
        return f"subject asks to stop ('{subject.strip()}')"
    if len(new_text.split()) > _MAX_WORDS or _REFERRAL.search(new_text):
        return None
    found = _ASKS.search(new_text)
    return f"short message asks to stop ('{found.group(0)}')" if found else None
