"""The new text of a reply: what the person wrote, without the quoted thread and signature.

Pure line rules, measured against mail-parser-reply on the corpus (docs/classification.md):
each line is labelled (quote, attribution "On ... wrote:", forwarded/original-message
marker, Outlook header block, signature, delimiter, text), then the message is cut at the
first marker that starts the history, trailing quotes are dropped and inline answers keep
the quotes they answer.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.domain.inbound_mail import InboundMail


class Line(Enum):
    empty = "e"
    quote = "q"
    attribution = "a"  # "On <date>, <someone> wrote:" and its translations
    marker = "m"  # "-----Original Message-----", "Begin forwarded message:"
    header = "h"  # first line of an Outlook-style From:/Sent:/To: block
    signature = "s"
    delimiter = "d"  # a line of punctuation only: "-----", "_____", "* * *"
    text = "t"


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\ufeff\u1427\u00ad"), None)
_WROTE = (
    r"wrote|writes|said|schrieb|geschrieben|a\s+écrit|écrit|escribió|escreveu|ha\s+scritto|"
    r"scrisse|schreef|het\s+volgende\s+geschreven|skrev|napisał(?:\(a\))?|написал(?:\(а\)|а)?|"
    r"пише|kirjoitti|írta|yazdı|写道|寫道|が書きました"
)
_OPENER = r"On|At|Le|Am|Op|El|Em|Il|Den|Dnia|Dňa|W\s+dniu|In\s+message|在"
_ATTRIBUTIONS = (
    # "On Tue, 2011-03-01 at 18:02 +0530, Someone wrote:" in many languages.
    re.compile(rf"^[\s>*-]*(?:{_OPENER})\s.{{2,300}}?(?:{_WROTE})(?:\s[^:：]{{0,120}})?[\s.]*[:：]?[\s*-]*$",
               re.IGNORECASE),
    # "Someone <a@b.c> wrote:", "02.04.2012 14:20 user написал:" - needs an address or a
    # date so that "My colleague wrote:" in a person's own text is not taken for history.
    re.compile(rf"^[\s>*]*(?=.*(?:@|\b\d{{4}}\b|\d[:./]\d\d|\svia\s)).{{1,300}}?\b(?:{_WROTE})\b"
               r".{0,120}?[:：][\s*]*$",
               re.IGNORECASE),
    # "2013/7/20 Someone <a@b.c>", "Thu, 26 Jun 2014 14:00 от Someone <a@b.c>:"
    re.compile(r"^[\s>*]*(?=.*\d{4}).{4,200}<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?[\s:]*$"),
    # Gmail's old "2016-03-03 17:21 GMT+01:00 Some One"
    re.compile(r"^[\s>]*\d{4}-\d\d-\d\d \d\d?:\d\d GMT[+-]\d\d:\d\d \S.*$"),
)
_MARKER = re.compile(
    r"^[ \t>*]*(?:(?:-{2,}|_{2,})[ \t]*)?(?:"
    r"original message|forwarded message|reply message|message d'origine|message transféré|"
    r"ursprüngliche nachricht|weitergeleitete nachricht|mensaje original|mensaje reenviado|"
    r"mensagem original|mensagem encaminhada|oorspronkelijk bericht|doorgestuurd bericht|"
    r"messaggio originale|messaggio inoltrato|originalmeddelande|opprinnelig melding|"
    r"oprindelig meddelelse|alkuperäinen viesti|исходное сообщение|пересылаемое сообщение|"
    r"原始邮件|原始郵件|元のメッセージ"
    r")[ \t*_-]*$"
    r"|^[\s>]*(?:begin forwarded message|début du message (?:réexpédié|transféré)|"
    r"anfang der weitergeleiteten nachricht)\s*:?\s*$",
    re.IGNORECASE,
)
_FROM_NAMES = r"from|von|de|da|van|от|från|fra|od|lähettäjä|feladó|remetente|expéditeur"
_OTHER_NAMES = (
    r"sent|date|to|subject|cc|reply-to|gesendet|datum|an|betreff|envoyé|à|objet|inviato|"
    r"risposta|a|oggetto|verzonden|aan|onderwerp|enviado|enviada|para|asunto|assunto|fecha|"
    r"отправлено|кому|тема|дата|data|temat|do|skickat|till|ämne|sendt|til|emne|lähetetty|"
    r"vastaanottaja|aihe|envoyé le|date d'envoi"
)
_HEADER_FROM = re.compile(rf"^[\s>*]*(?:{_FROM_NAMES})\s*[*]*\s*[:：]", re.IGNORECASE)
_HEADER_ANY = re.compile(rf"^[\s>*]*(?:{_FROM_NAMES}|{_OTHER_NAMES})\s*[*]*\s*[:：]", re.IGNORECASE)
_SIG_DASHES = re.compile(r"^-- ?$|^--\s*$")
_MOBILE_SIG = re.compile(
    r"^[\s(<]*(?:sent from|sent via|sent with|sent using|get outlook for|envoyé de(?:puis)? mon|"
    r"von meinem .{1,40} gesendet|gesendet von meinem|enviado desde mi|enviado do meu|"
    r"enviado de meu|verzonden (?:vanaf|met) |verstuurd vanaf mijn|inviato da|sendt fra min|"
    r"skickat från min|wysłane z|отправлено с|diese nachricht wurde von meinem|從我的|"
    r"从我的|sent by galaxy|iphoneから送信)",
    re.IGNORECASE,
)
_DELIMITER = re.compile(r"^\s*(?:[-_=*~#+•.]\s*){3,}$")


def _is_signature(line: str) -> bool:
    if _SIG_DASHES.match(line):
        return True
    if not _MOBILE_SIG.match(line):
        return False
    # "Sent from my desk, is much easier than my phone." is a sentence, not a signature.
    words = len(line.split())
    return words <= 8 or bool(re.search(r"excuse|typo|brevity|kurz", line, re.IGNORECASE))


def _header_block_at(lines: list[str], i: int) -> bool:
    """Is line i the start of an Outlook-style block (From: and at least one more field)?"""
    if not (_HEADER_ANY.match(lines[i])):
        return False
    names, from_seen = 0, False
    for line in lines[i : i + 8]:
        if not line.strip():
            break
        if _HEADER_ANY.match(line):
            names += 1
            from_seen = from_seen or bool(_HEADER_FROM.match(line))
    return names >= 2 and from_seen


# An attribution wrapped over lines starts like one: an opener word, a date, an address.
_WRAPPED_START = re.compile(rf"^[\s*-]*(?:(?:{_OPENER})\s|\d|.*@|.*\svia\s)", re.IGNORECASE)


def _attribution_span(lines: list[str], i: int) -> int:
    """How many lines (1-3) starting at i form an attribution line; 0 when none."""
    if len(lines[i].strip()) > 400:  # longer than any attribution (and regexes cost on it)
        return 0
    for span in (1, 2, 3):
        if i + span > len(lines) or (span > 1 and not lines[i + span - 1].strip()):
            break
        if span > 1 and (
            not _WRAPPED_START.match(lines[i].strip())
            or lines[i + span - 1].lstrip().startswith(">")
        ):
            break
        joined = " ".join(part.strip() for part in lines[i : i + span])
        if len(joined) <= 400 and any(r.match(joined) for r in _ATTRIBUTIONS):
            return span
    return 0


def label_lines(lines: list[str]) -> list[Line]:
    """Label every line; a multi-line attribution labels all of its lines."""
    labels: list[Line] = []
    i, in_code = 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:  # a fenced code block is text, whatever its lines look like
            labels.append(Line.text)
            i += 1
            continue
        span = 0 if line.lstrip().startswith(">") else _attribution_span(lines, i)
        if span:
            labels.extend([Line.attribution] * span)
            i += span
            continue
        labels.append(_label(lines, i))
        i += 1
    return labels


def _label(lines: list[str], i: int) -> Line:
    line = lines[i]
    if not line.strip():
        return Line.empty
    if _MARKER.match(line):
        return Line.marker
    if line.lstrip().startswith(">"):
        return Line.quote
    if _is_signature(line):
        return Line.signature
    if _DELIMITER.match(line):
        return Line.delimiter
    if _header_block_at(lines, i):
        return Line.header
    return Line.text


def _interleaved_after(labels: list[Line], i: int) -> bool:
    """After the attribution at i: a quote, then more text the person wrote (inline answers)?"""
    rest = [lab for lab in labels[i + 1 :] if lab is not Line.empty]
    if not rest or rest[0] is not Line.quote:
        return False
    after_quotes = [lab for lab in rest if lab is not Line.quote]
    return bool(after_quotes) and after_quotes[0] is Line.text


def _cut_index(labels: list[Line]) -> tuple[int, set[int]]:
    """Where the history starts (after the first text), and attribution lines to drop."""
    seen_text, drop = False, set[int]()
    for i, lab in enumerate(labels):
        if lab is Line.text:
            seen_text = True
        elif not seen_text:
            continue
        elif lab is Line.attribution:
            if not _interleaved_after(labels, i):
                return i, drop
            drop.add(i)
        elif lab in (Line.marker, Line.header, Line.signature):
            return i, drop
    return len(labels), drop


def _leading_history(labels: list[Line]) -> set[int]:
    """Lines before the first text that belong to the history: markers, headers, quotes
    directly under an attribution (a bottom-posted answer), forwarded header blocks."""
    drop: set[int] = set()
    in_block = after_attribution = False
    quote_runs = _quote_runs(labels)
    for i, lab in enumerate(labels):
        if lab is Line.text and not in_block:
            break
        if lab in (Line.attribution, Line.marker, Line.header):
            after_attribution, in_block = True, lab is not Line.attribution
            drop.add(i)
        elif lab is Line.empty:
            in_block = False
            drop.add(i)
        elif in_block or lab is Line.delimiter or (
            lab is Line.quote and after_attribution and quote_runs == 1
        ):
            drop.add(i)
        else:
            break
    return drop


def _quote_runs(labels: list[Line]) -> int:
    compact = "".join(lab.value for lab in labels if lab is not Line.empty)
    return len(re.findall(r"q+", compact))


def new_text(body: str) -> str:
    """The new text of a reply body (plain text); "" when it is all quoted history."""
    lines = body.translate(_INVISIBLE).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    labels = label_lines(lines)
    leading = _leading_history(labels)
    kept_labels = [lab for i, lab in enumerate(labels) if i not in leading]
    kept_lines = [line for i, line in enumerate(lines) if i not in leading]
    cut, drop = _cut_index(kept_labels)
    pairs = [(lab, kept_lines[i]) for i, lab in enumerate(kept_labels[:cut]) if i not in drop]
    pairs = [(lab, line) for lab, line in pairs if lab is not Line.delimiter]
    while pairs and pairs[-1][0] in (Line.empty, Line.quote, Line.attribution):
        pairs.pop()
    if not any(lab is Line.text for lab, _ in pairs):
        return _only_quoted(lines, labels)
    return "\n".join(line.rstrip() for _, line in pairs).strip("\n")


def _only_quoted(lines: list[str], labels: list[Line]) -> str:
    """No text of its own: a bare quote is the content; quoted history is nothing new."""
    unquoted = [re.sub(r"^[\s>]+", "", line) for line in lines]
    history = any(lab in (Line.attribution, Line.marker, Line.header) for lab in labels)
    if history or any(_attribution_span(unquoted, i) for i in range(len(unquoted))):
        return ""
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def reply_new_text(mail: InboundMail) -> str:
    """The text a person wrote in this message, without quoted history and signature."""
    return new_text(mail.text)
