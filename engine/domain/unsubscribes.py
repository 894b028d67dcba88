"""Unsubscribe requests written by a person: "unsubscribe", "remove me", "stop emailing me".

An unsubscribe stops and suppresses for good with no handoff, so a wrong one silently loses
a lead, while a wrong handoff costs a rep a minute: when in doubt, a message is a reply.
The ask must be the message's main and only request: read on the new text only (a quoted
footer of ours says "unsubscribe" too), in a short message whose every sentence but
greetings, thanks and sign-offs is the ask itself, with no question, no other request
("... and send me the enterprise one"), no topic ("... about the old plan") and no referral
("... and add my boss").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from engine.domain.sentences import substance

if TYPE_CHECKING:
    from engine.domain.inbound_mail import InboundMail

_MAX_WORDS = 40  # "Please take me off your list, thanks. John" is short; a real answer is not
_ASKS = re.compile(
    r"\bun-?subscribe\b|\bremove me\b|\bremove (?:my (?:e-?mail|address|name)|us)\b|"
    r"\btake (?:me|us|my (?:e-?mail|address)) off\b|\bopt (?:me|us) out\b|"
    r"\bstop (?:e-?mailing|sending|contacting|writing|spamming|messaging)(?: (?:me|us)\b| "
    r"(?:these|your|the) (?:e-?mails|mails|messages)\b|\s*[.!]|\s*$)|"
    r"\b(?:do not|don'?t|never) (?:e-?mail|contact|write(?: to)?|message|send) (?:me|us)\b|"
    r"\bno (?:more|further) (?:e-?mails|emails|messages)\b|\bplease stop\s*(?:[.!]|$)|"
    r"^\W*(?:stop|remove|opt[- ]?out)\W*$|"
    # de / fr / es / nl / pt
    r"\babmelden\b|\babbestellen\b|\baustragen\b|\bentfernen sie mich\b|\bkeine (?:weiteren )?"
    r"(?:e-?mails|nachrichten|mails)(?: mehr)?\b|\bnehmen sie mich (?:aus|von)\b|"
    r"\bdésabonne[rz]\b|\bdésinscri(?:re|vez|ption)\b|\bretirez[- ]moi\b|"
    r"\bne (?:veux |souhaite )?plus (?:recevoir|m'envoyer|me contacter|m'écrire)\b|"
    r"\barrêtez de m'envoyer\b|"
    r"\bdar(?:me)? de baja\b|\bdarse de baja\b|\bdenme de baja\b|\beliminarme\b|"
    r"\bno (?:me )?(?:envíe|envie|envíen|mande)n?\b|\bno quiero recibir\b|"
    r"\bdejen de (?:enviarme|escribirme|mandarme)\b|"
    r"\buit(?:schrijven| te schrijven)\b|\bschrijf (?:mij|me) uit\b|"
    r"\bafmelden\b|\bverwijder (?:mij|me)\b|\bstop met (?:mailen|e-?mailen)\b|"
    r"\bgeen (?:e-?mails|mails|berichten) meer\b|"
    r"\bdescadastr(?:ar|e)(?:-me)?\b|\bcancelar (?:a )?inscrição\b|\bme remova\b|"
    r"\bremov(?:er|a)-me\b|\bparar de enviar\b|\bparem de (?:me )?enviar\b|"
    r"\bnão quero (?:mais )?receber\b",
    re.IGNORECASE | re.MULTILINE,
)
# Someone who names another person, address or thread is redirecting us: a rep should read it.
_REFERRAL = re.compile(
    r"@|colleague|co-?worker|instead|in charge|responsible for|handles|\bboss\b|manager|"
    r"\bb?cc\b|\bin copy\b|\bthread\b|\bloop\b|forward|\b(?:contact|add|include|ask|talk to|"
    r"speak to|reach out to|write to) (?:my|our|him|her|them)\b|kollege|kollegin|chef|"
    r"vorgesetzte|zuständig|ansprechpartner|in kopie|collègue|patron|responsable|en copie|"
    r"compañer[oa]|colega|jefe|encargad[oa]|en copia|collega|baas|leidinggevende|"
    r"verantwoordelijk|in de cc|gerente|em cópia",
    re.IGNORECASE,
)
# Before the ask: "please", "Not interested,", "Merci de me", "Por favor,": a few words.
_MAX_LEAD_IN = 5
# "Don't unsubscribe me", "nicht abmelden", "pas me désabonner": the ask is negated.
_NEGATED = re.compile(
    r"\b(?:not?|don'?t|do not|never|why|nicht|kein|ne|pas|nunca|nada|niet|geen|não|nao)\s+"
    r"(?:[\w'-]+\s+)?$",
    re.IGNORECASE,
)
# After the ask only "from your mailing list, thanks" may follow: every other word is a
# second request, a topic or a condition ("... the PDF version", "... on weekends", "...
# and send me the enterprise one", "..., I can't make it"), so a rep reads it.
_TAIL_WORDS = frozenset(" ".join((
    "from off of out your the this these that all any my our mailing email e-mail emails "
    "e-mails mail mails message messages list lists database distribution contact contacts "
    "newsletter newsletters system records communications marketing sequence campaign more "
    "further future anymore any please pls plz kindly immediately now asap thanks thank you "
    "permanently for good right away me us address addresses i'm im we're not interested no "
    "longer",  # en
    "aus dem der den die ihrem ihrer ihren ihre verteiler liste mailingliste e-mail-liste "
    "nachrichten mehr erhalten bekommen bitte danke sofort von zu uns mich mir",  # de
    "de la le les du des votre vos liste mailing courriels courriel diffusion fichier base "
    "données recevoir moi merci svp s'il vous plaît plait d'emails e-mails immédiatement",  # fr
    "su sus lista correos correo mensajes más mas por favor gracias ya boletín boletin datos "
    "envíos envios recibir ahora",  # es
    "van uw jullie lijst mailinglijst verzendlijst nieuwsbrief berichten meer ontvangen "
    "graag aub a.u.b. alstublieft alsjeblieft bedankt dank mij",  # nl
    "da do sua seu lista e-mails mensagens mais obrigado obrigada receber dados",  # pt
)).split())
_WORD = re.compile(r"[^\W\d_][\w.'-]*|\d+", re.UNICODE)
_MAX_TAIL = 8  # "from your mailing list immediately, thank you"
# Before the ask, a word that makes it a statement, a condition or a question about it:
# "I'll unsubscribe later", "if it is not for us, remove me", "how do I unsubscribe".
_NOT_A_REQUEST = re.compile(
    r"\b(?:i'?ll|i will|we'?ll|we will|going to|might|may|almost|nearly|about to|how|when|"
    r"where|why|if|whether|before|after|once|until|unless|wenn|falls|wie|warum|si|quand|"
    r"comment|cuando|cómo|como|porque|als|hoe|wanneer|quando|se)\b",
    re.IGNORECASE,
)
# A polite question that is still the ask: "Could you take me off your list?"
_POLITE = re.compile(
    r"^\W*(?:please,? |kindly )?(?:can|could|would|will) (?:you|u)\b|^\W*(?:kannst du|können sie|"
    r"könnten sie|pourriez-vous|pouvez-vous|puede|podría|pueden|podrían|kunt u|kun je|kunnen "
    r"jullie|pode|podem|poderia)\b",
    re.IGNORECASE,
)
# Beside an "Unsubscribe" subject, a question or a next step means a person to answer.
_ENGAGED = re.compile(
    r"\?|\b(?:interest|demo|call|meet|meeting|pricing|price|quote|send me|schedule|book|trial|"
    r"interess|termin|anruf|angebot|rendez-vous|appel|devis|reunión|llamada|precio|"
    r"afspraak|bellen|offerte|prijs|reunião|ligação|preço|orçamento)",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:not|no longer|kein|nicht mehr|pas|plus|no me|ya no|geen|niet meer|não|nao) "
    r"(?:[\w'-]+ )?(?:interest|interess|intéress|interesa)\w*",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"^\W*(?:un-?subscribe|remove(?: me)?|stop|opt[- ]?out|abmelden|austragen|désabonner|"
    r"désinscription|baja|darme de baja|uitschrijven|afmelden|descadastrar|cancelar)\W*$",
    re.IGNORECASE,
)
_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr|rv|res)\s*:\s*)+", re.IGNORECASE)


def address_reason(mail: InboundMail) -> str | None:
    """Sent to our List-Unsubscribe mailto address: a request to stop whatever it says (a
    mail client's one-click unsubscribe writes "This message was automatically generated")."""
    if any(addr.split("@", 1)[0].startswith("unsubscribe") for addr in mail.to):
        return "sent to an unsubscribe address"
    return None


# "Not interested", "No thanks": a refusal that goes with an ask, nothing to answer.
_REFUSAL_ONLY = re.compile(
    r"^\W*(?:no,? thanks?(?: you)?|(?:sorry,? )?(?:i'?m |we'?re |we are |i am )?not interested|"
    r"kein interesse|pas intéressée?s?|no (?:me |nos )?interesa|no estoy interesad[oa]|"
    r"geen interesse|não tenho interesse|sem interesse|sorry)\W*$",
    re.IGNORECASE,
)


def unsubscribe_reason(mail: InboundMail, new_text: str) -> str | None:
    """Why this is a person's request to stop, or None."""
    if len(new_text.split()) > _MAX_WORDS or _REFERRAL.search(new_text):
        return None
    said = [s for s in substance(new_text, keep=_ASKS.search) if not _REFUSAL_ONLY.match(s)]
    asks = [_main_ask(sentence) for sentence in said]
    subject = _PREFIX.sub("", mail.subject)
    engaged = [bool(_ENGAGED.search(_REFUSAL.sub("", sentence))) for sentence in said]
    if _SUBJECT.match(subject) and all(ask or not e for ask, e in zip(asks, engaged, strict=True)):
        # The subject is the request; the text may give a reason ("I've had enough").
        return f"subject asks to stop ('{subject.strip()}'), the text asks nothing else"
    if not asks or not all(asks):
        return None  # a question, another request, a topic or anything else a rep should read
    return f"the message only asks to stop ('{asks[0]}')"


def _main_ask(sentence: str) -> str | None:
    """The ask when it is what this sentence says: a few words before it, none negating it
    or making it a statement or a condition; no question unless a polite one; and after it
    only where to remove the address from and courtesy."""
    found = _ASKS.search(sentence)
    if found is None:
        return None
    lead_in, tail = sentence[: found.start()], sentence[found.end():]
    if sentence.rstrip().endswith("?") and not _POLITE.match(sentence):
        return None
    if len(lead_in.split()) > _MAX_LEAD_IN or _NEGATED.search(lead_in):
        return None
    if _NOT_A_REQUEST.search(lead_in):
        return None
    words = [w.lower().rstrip(".'-") for w in _WORD.findall(tail)]
    if len(words) > _MAX_TAIL or any(w not in _TAIL_WORDS for w in words):
        return None
    return found.group(0)
