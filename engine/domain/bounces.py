"""Bounce detection: is this inbound message a delivery failure, for whom, hard or soft?

Three sources, most reliable first: RFC 3464 delivery-status fields; the structure and
wording of the non-standard notices MTAs still send (qmail, Exim, old Postfix, Exchange,
Domino, AOL, Yahoo, Gmail ...); flufl.bounce's verdict (computed in mail/parse.py). Hard
means the address is dead (suppress); soft means this message or this moment failed:
4.x.x, delays, full mailboxes, size limits and content or policy rejections (RFC 3463).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.domain.inbound_mail import is_reply_subject

if TYPE_CHECKING:
    from engine.domain.inbound_mail import DeliveryStatus, InboundMail


@dataclass(frozen=True)
class BounceFinding:
    hard: bool
    reason: str
    recipients: tuple[str, ...]


_FAILING_ACTIONS = ("failed", "failure", "error", "delayed")
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster|mdaemon|mail[-_.]?delivery"
    r"(?:[-_.]?(?:system|subsystem|service))?|mail[-_.]?administrator|mailadm|bounces?|"
    r"nobody|.*smtp.*service.*|.*antivirus.*|.*(?:gw|gateway)\d*|system administrator|"
    r"\"system administrator\")$",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail(?:er)?[-_ ]?daemon|mail delivery (?:system|subsystem|service)|postmaster|"
    r"mail administrator|e-?mail delivery",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"undeliver|non[- ]?deliver|not (?:be )?delivered|delivery (?:status notification|failure|"
    r"failed|problem|report|notification|has failed|error|warning|delayed)|"
    r"(?:mail|message) (?:delivery )?(?:failed|failure|error|not delivered)|failed mail|"
    r"returned mail|returning message|returned to sender|failure notice|failure delivery|"
    r"delayed mail|message delayed|delivery delayed|has not (?:yet )?been delivered|"
    r"could not (?:be )?deliver|mail system error|unzustellbar|nicht zustellbar|"
    r"zustellung fehlgeschlagen|non remis|non distribuable|échec de (?:la )?remise|"
    r"non recapitabile|no se (?:pudo|puede) entregar|onbestelbaar|não (?:foi )?entregue|"
    r"не доставлено|processing error|utilisateur non recensé",
    re.IGNORECASE,
)
_BODY = re.compile(
    r"could ?n[o']t (?:be )?deliver|cannot be delivered|can not be delivered|"
    r"was not delivered|(?:is|was|were) undeliverable|undelivered mail|delivery (?:to the "
    r"following (?:recipients?|addresses) )?(?:has )?failed|delivery (?:has )?failed|"
    r"permanent(?:ly)? (?:fatal )?(?:error|failure)|fatal errors?|unable to deliver|"
    r"failed to deliver|delivery (?:problem|attempts|failure)|(?:was|been) aborted|"
    r"(?:user|recipient|mailbox|address|account)s? (?:is )?(?:unknown|not found|"
    r"does ?n[o']t exist|unavailable|invalid|disabled)|no such (?:user|mailbox|address|"
    r"recipient|domain)|not a valid (?:user|recipient|address|mailbox)|message (?:has been )?"
    r"delayed|will (?:continue to )?(?:retry|try)|still being retried|has not (?:yet )?been "
    r"delivered|this is the (?:mail system|qmail-send program|mail delivery)|returned to "
    r"sender|returning message|the following address(?:es)? (?:had|failed)|konnte nicht "
    r"zugestellt werden|unzustellbar|n'a pas pu (?:être|etre) (?:délivré|delivre|remis|"
    r"distribué)|no (?:ha |se )?(?:podido|pudo) (?:ser )?entregar|kon niet worden afgeleverd|"
    r"não (?:pôde|pode|foi possível) (?:ser )?entreg|не (?:может быть )?доставлен",
    re.IGNORECASE,
)
# Where a notice stops and the copy of the original message starts.
_ORIGINAL = re.compile(
    # One class for the leading quote marks, dashes and blanks, and never across lines:
    # overlapping quantifiers here took minutes on a line of dashes (a ReDoS in every pass).
    r"^[ \t>-]*(?:original message(?! was received)|below this line is a copy|"
    r"(?:this|here) is a copy of the (?:first part of the )?message|the header of the original "
    r"message|header of the source mail|original message follows|unsent message below|"
    r"(?:start of )?returned message|message headers? follows?|"
    r"(?:(?<=-)|(?<=- ))(?:original|returned) )",
    re.IGNORECASE | re.MULTILINE,
)
# A subject that announces a warning, not a failure ("Warning: message delayed 2 days").
_WARNING = re.compile(
    r"\bwarn(?:ing|ung)\b|\bdelay(?:ed)?\b|not yet been delivered|still being retried",
    re.IGNORECASE,
)
_EXPANDED = re.compile(
    r"<?([^\s<>]+@[^\s<>]+?)>?\s+\(expanded from:?\s*<?([^\s<>)]+@[^\s<>)]+)>?\)",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_ENHANCED = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# "550 user unknown", "550-5.1.1": not "480-624-2500", a phone number.
_SMTP_CODE = re.compile(r"(?<![\d.-])([45])\d\d(?= |-(?!\d)|$)", re.MULTILINE)
_SOFT = re.compile(
    # "spam", not a sender's domain such as "@spammotel.com"
    r"(?<![\w@.-])spam|unsolicited|junk|bulk|\bube\b|content|blocked|black ?list|block ?list|"
    r"\buribl\b|\brbl\b|reputation|policy|policies|virus|too (?:large|big)|size limit|message size|"
    r"exceeds? (?:the )?(?:allowed |maximum )?size|max(?:imum)? message size|quota|(?:mailbox|"
    r"mailfolder) (?:is )?full|over quota|disk space|storage|insufficient|zuviele mails|space "
    r"not enough|rate limit|not accepting mail with|delayed|will (?:continue to )?(?:retry|"
    r"try)|still being retried|not yet been delivered|try again later|temporar",
    re.IGNORECASE,
)
_HARD = re.compile(
    r"unknown|not found|does ?n[o']t exist|nie\s+istnieje|no such|invalid|not (?:a )?(?:valid|"
    r"known|active)|no (?:mail ?box|mailbox|account)|mailbox (?:unavailable|not available|"
    r"currently suspended)|deactivated|disabled|suspended|not our customer|no longer|"
    r"address rejected|recipient rejected|bad_?recipient|bad destination|name service error|"
    r"host unknown|name or service not known|malformed|domain (?:not found|isn't in)|"
    r"no such domain|could not find a gateway|relaying denied|n'existe pas|unbekannt",
    re.IGNORECASE,
)


def notice_text(mail: InboundMail) -> str:
    """The bounce's own words: its text up to the copy of the returned message."""
    found = _ORIGINAL.search(mail.text)
    return mail.text[: found.start()] if found else mail.text


def is_automated_sender(mail: InboundMail) -> bool:
    """Sent by mail software: a daemon/postmaster address, the null sender <>, no From."""
    local = mail.from_addr.rsplit("@", 1)[0]
    return (
        not mail.from_addr
        or mail.return_path == ""
        or bool(_DAEMON_LOCAL.match(local))
        or bool(_DAEMON_NAME.search(mail.from_name))
    )


def has_delivery_report(mail: InboundMail) -> bool:
    return mail.report_type == "delivery-status" or any(
        t.endswith("delivery-status") for t in mail.part_types
    )


def find_bounce(mail: InboundMail) -> BounceFinding | None:
    """A delivery failure, from its delivery-status fields or its wording; else None."""
    failing = [d for d in mail.delivery_status if d.action.startswith(_FAILING_ACTIONS)]
    if failing:
        return _from_dsn(mail, failing)
    if mail.delivery_status:
        return None  # every recipient delivered, relayed or expanded: a delivery notice
    why = _nonstandard_reason(mail)
    if why is None:
        return None
    text = notice_text(mail)
    hard, detail = _hardness("", f"{mail.subject}\n{text}", _library_soft(mail))
    return BounceFinding(hard, f"{why}; {detail}", _recipients(mail, text))


def _from_dsn(mail: InboundMail, failing: list[DeliveryStatus]) -> BounceFinding:
    verdicts = [(_dsn_hardness(mail, d), d) for d in failing]
    hard = any(h for (h, _), _ in verdicts)
    detail = next(why for (h, why), _ in verdicts if h == hard)
    # Several recipients can fail differently; name those that failed the way we report.
    named = (d.recipient for (h, _), d in verdicts if h == hard and "@" in d.recipient)
    recipients = tuple(dict.fromkeys(named))
    statuses = ", ".join(sorted({f"{d.action} {d.status}".strip() for d in failing}))
    return BounceFinding(hard, f"RFC 3464 delivery-status ({statuses}); {detail}",
                         recipients or _recipients(mail, notice_text(mail)))


def _dsn_hardness(mail: InboundMail, d: DeliveryStatus) -> tuple[bool, str]:
    """The recipient's own Diagnostic-Code first; a specific status code next; the notice's
    wording only when the report says no more than x.0.0."""
    status = "4.0.0" if d.action == "delayed" and not d.status.startswith("4") else d.status
    if d.diagnostic or status.startswith("4"):
        return _hardness(status, d.diagnostic, False)
    if status and not status.endswith(".0.0"):
        return _by_code(status)
    return _hardness(status, f"{mail.subject}\n{notice_text(mail)}", _library_soft(mail))


def _nonstandard_reason(mail: InboundMail) -> str | None:
    """Which rule makes a message without delivery-status fields a bounce, if any."""
    if mail.header("x-failed-recipients"):
        return "X-Failed-Recipients header (Exim)"
    text = notice_text(mail)
    subject_hit = bool(_SUBJECT.search(mail.subject))
    body_hit = bool(_BODY.search(text[:6000]))
    automated = is_automated_sender(mail)
    library = mail.library_bounce is not None and bool(
        mail.library_bounce.permanent or mail.library_bounce.temporary
    )
    if has_delivery_report(mail) and (automated or subject_hit or body_hit):
        return "multipart/report delivery-status without recipient fields"
    if automated and (subject_hit or body_hit):
        return "non-standard bounce from mail software (sender and wording)"
    if automated and library:
        return "non-standard bounce from mail software (flufl.bounce found recipients)"
    if library and subject_hit:
        return "non-standard bounce (flufl.bounce found recipients, subject agrees)"
    # flufl.bounce also finds addresses in people's replies; their wording alone is weak.
    threaded = bool(mail.in_reply_to or mail.references) or is_reply_subject(mail.subject)
    if library and body_hit and not threaded:
        return "non-standard bounce (flufl.bounce found recipients, wording agrees)"
    return None


def _library_soft(mail: InboundMail) -> bool:
    lib = mail.library_bounce
    return lib is not None and bool(lib.temporary) and not lib.permanent


def _hardness(status: str, text: str, library_soft: bool) -> tuple[bool, str]:
    """(hard?, why) from an enhanced status code and the failure's wording."""
    if status.startswith("4"):
        return False, f"temporary failure {status}"
    first_line = text.split("\n", 1)[0]
    if _WARNING.search(first_line) and not _HARD.search(first_line):
        return False, "delay warning"
    soft, hard = _SOFT.search(text), _HARD.search(text)
    if soft and not hard:
        return False, f"message or moment rejected ('{soft.group(0)}')"
    if hard and not soft:
        return True, f"address rejected ('{hard.group(0)}')"
    code = status or _first_status(text)
    if code:
        return _by_code(code)
    if library_soft:
        return False, "flufl.bounce reports a temporary failure"
    smtp = _SMTP_CODE.search(text)
    if smtp:
        return smtp.group(1) == "5", f"SMTP reply {smtp.group(0)}"
    return True, "permanent failure without a status code"


def _first_status(text: str) -> str:
    found = _ENHANCED.search(text)
    return ".".join(found.groups()) if found else ""


def _by_code(code: str) -> tuple[bool, str]:
    """RFC 3463 subjects: x.1 address and x.2.1 disabled are the address; size (x.2.3,
    x.3.4), full mailbox (x.2.2) and policy (x.7) are about this message."""
    klass, subject, detail = (code.split(".") + ["", ""])[:3]
    if klass == "4":
        return False, f"temporary failure {code}"
    if subject == "7" or (subject, detail) in {("2", "2"), ("2", "3"), ("3", "4")}:
        return False, f"message rejected {code}"
    return True, f"permanent failure {code}"


def _recipients(mail: InboundMail, text: str) -> tuple[str, ...]:
    """The failed addresses: X-Failed-Recipients, else flufl.bounce, else the notice text."""
    header = mail.header("x-failed-recipients")
    if header:
        return tuple(dict.fromkeys(a.lower() for a in _ADDRESS.findall(header)))
    lib = mail.library_bounce
    if lib is not None and (lib.permanent or lib.temporary):
        found = lib.permanent + lib.temporary
    else:
        found = _addresses_in_notice(mail, text)
    # Sendmail names the alias target; the address we wrote to is the one it came from.
    expanded = {a.lower(): b.lower() for a, b in _EXPANDED.findall(text)}
    return tuple(dict.fromkeys(expanded.get(a, a) for a in found))


def _addresses_in_notice(mail: InboundMail, text: str) -> tuple[str, ...]:
    """Addresses the notice names, minus its own sender, recipients and daemons."""
    ours = {mail.from_addr, *mail.to, mail.return_path or ""}
    found: list[str] = []
    for line in text.splitlines():
        if re.match(r"\s*(?:received|message-id|from|reporting-mta|return-path)\s*:", line, re.I):
            continue
        for addr in _ADDRESS.findall(line):
            addr = addr.lower().strip(".")
            local = addr.split("@", 1)[0]
            if addr not in ours and not _DAEMON_LOCAL.match(local):
                found.append(addr)
    return tuple(dict.fromkeys(found))
