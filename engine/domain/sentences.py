"""The sentences of a reply's new text, and which of them are mere courtesy.

The unsubscribe and auto-reply rules ask what a message mainly says: its first (or last)
sentence that is not a greeting, a thanks, a sign-off or a name. Courtesy is recognised in
en, de, fr, es, nl and pt.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A sentence ends at . ! ? (followed by space) or at a line break; "E-Mails." stays whole.
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hallo|guten (?:tag|morgen|abend)|"
    r"sehr geehrte[rs]?|liebe[rs]?|moin|servus|bonjour|bonsoir|salut|madame|monsieur|hola|"
    r"buen(?:os|as) (?:días|dias|tardes|noches)|estimad[oa]s?|hoi|beste|geachte|goedemorgen|"
    r"goedemiddag|olá|ola|oi|bom dia|boa tarde|prezad[oa]s?|car[oa])\b(?:\W+[\w.'-]+){0,3}\W*$",
    re.IGNORECASE,
)
# "Thanks", "Thank you for your email", "Vielen Dank!": a thanks with at most a few words.
_THANKS = re.compile(
    r"^(?:many |thanks? (?:a lot|so much)|ok(?:ay)?,? )?(?:thanks|thank you|thx|danke|vielen dank|"
    r"besten dank|herzlichen dank|merci|gracias|muchas gracias|bedankt|dank (?:je|u)(?: wel)?|"
    r"obrigad[oa]|muito obrigad[oa])\b(?:\W+[\w'-]+){0,6}[\s.,!:;)-]*$",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    r"^(?:best|best regards|kind regards|warm regards|regards|cheers|br|mfg|mit freundlichen "
    r"grüßen|freundliche grüße|viele grüße|beste grüße|liebe grüße|gruß|grüße|lg|cordialement|"
    r"bien cordialement|bien à vous|salutations|saludos|un saludo|saludos cordiales|atentamente|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groet(?:en|jes)?|mvg|"
    r"atenciosamente|abraços?|cumprimentos|att)\b(?:\W+[\w.'-]+){0,3}\W*$",
    re.IGNORECASE,
)
# A signature name: one to three capitalised words and nothing else ("Dana", "Dana Lead").
_NAME = re.compile(r"^[-–—\s]*(?:[A-ZÀ-Þ][\w.'-]*\s*){1,3}$")


def sentences(text: str) -> list[str]:
    """The text's sentences, stripped, without empty ones."""
    return [s.strip() for s in _SPLIT.split(text) if s.strip()]


def is_courtesy(sentence: str) -> bool:
    """A greeting, a short thanks, a sign-off or a bare name: nothing asked or said."""
    return any(rule.match(sentence) for rule in (_GREETING, _THANKS, _SIGN_OFF, _NAME))


def substance(text: str, keep: Callable[[str], object]) -> list[str]:
    """The sentences that say something: those `keep` wants (checked first: "Unsubscribe"
    alone looks like a name) and every other one that is not courtesy."""
    return [s for s in sentences(text) if keep(s) or not is_courtesy(s)]
