"""The return date an out-of-office message gives: "back on 14 March", "zurück am 14.03.".

Only dates that follow a return cue ("back", "until", "zurück am", "de retour le", "hasta
el", "terug op", "retorno em" ...) count, in en, de, fr, es, nl, pt. A date that could be
read two ways (05/01 is 5 January or 1 May) counts only when one reading is implausible
next to the message's own date; otherwise the next cue is tried, and at the end None.

The date returned is the first day back. A date that names the last day away ("through
March 15", "bis einschließlich 15.03.", "jusqu'au 16 mars inclus", "tot en met 18 maart",
"hasta el 15 incluido", "até dia 15 inclusive") gives the next weekday after it; the lead's
own send window then moves the resumption past its days off and holidays.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from dateutil.relativedelta import FR, MO, SA, SU, TH, TU, WE, relativedelta, weekday

from engine.domain.schedule import add_business_days

_MONTHS = {
    1: "january jan januar jänner janvier janv enero ene januari janeiro",
    2: "february feb februar février fevrier févr fevr febrero februari fevereiro fev",
    3: "march mar märz maerz mär mars marzo maart mrt março marco",
    4: "april apr avril avr abril",
    5: "may mai mayo mei maio",
    6: "june jun juni juin junio junho",
    7: "july jul juli juillet juil julio julho",
    8: "august aug août aout agosto ago augustus",
    9: "september sep sept septembre septiembre setiembre setembro set",
    10: "october oct oktober okt octobre octubre outubro out",
    11: "november nov novembre noviembre novembro",
    12: "december dec dezember dez décembre decembre déc diciembre dic dezembro",
}
_MONTH_OF = {name: n for n, names in _MONTHS.items() for name in names.split()}
_MONTH_RE = "|".join(sorted(map(re.escape, _MONTH_OF), key=len, reverse=True))
_WEEKDAYS: dict[str, weekday] = {}
for _day, _names in (
    (MO, "monday montag lundi lunes maandag segunda"),
    (TU, "tuesday dienstag mardi martes dinsdag terça terca"),
    (WE, "wednesday mittwoch mercredi miércoles miercoles woensdag quarta"),
    (TH, "thursday donnerstag jeudi jueves donderdag quinta"),
    (FR, "friday freitag vendredi viernes vrijdag sexta"),
    (SA, "saturday samstag samedi sábado sabado zaterdag"),
    (SU, "sunday sonntag dimanche domingo zondag"),
):
    _WEEKDAYS.update(dict.fromkeys(_names.split(), _day))
_WEEKDAY_RE = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))

_CUES_EN = (
    r"\bback\b(?: in (?:the )?office| at work| in)?(?: on)?|\breturn(?:ing|s)?\b(?: to (?:the )?"
    r"office)?(?: on)?|\buntil\b|\btill\b|\bthrough\b|\bthru\b|\bavailable again(?: on| from)?"
)
_CUES_OTHER = (
    r"\bzurück\b(?: am| ab)?|\bwieder\b(?: im büro| erreichbar| da)?(?: am| ab)?|"
    r"\bbis\b(?: einschließlich| einschliesslich| inklusive| inkl\.| zum| am)?|\bab dem\b|"
    r"\bde retour\b(?: le| à partir du)?|\bretour\b(?: prévu)?(?: le)?|\bjusqu'(?:au|à)|"
    r"\bà partir du\b|\b(?:de )?regreso\b(?: el)?|\bvolver[ée]\b"
    r"(?: el)?|\bde vuelta\b(?: el)?|\bhasta\b(?: el)?|\ba partir del\b|\bterug\b(?: op| vanaf)?|"
    r"\btot en met\b|\bt/m\b|\btot\b|\bvanaf\b|\bretorno\b(?: em| no dia| dia)?|"
    r"\bvolto\b(?: em| no dia| dia)?|\bat[ée]\b(?: ao dia| o dia| dia)?|\ba partir de\b|"
    r"\bde volta\b(?: em| no dia)?"
)
# Words that make the date the last day away, after the cue or after the date.
_INCLUSIVE_WORDS = (
    r"inclusive|inclusivo|inclusief|inclus(?:e|es)?|incluid[oa]|incluso|included|"
    r"einschließlich|einschliesslich|inklusive|inkl\."
)
_INCLUSIVE_CUE = re.compile(r"through|thru|tot en met|t/m|einschlie|inkl", re.IGNORECASE)
_INCLUSIVE_AFTER = re.compile(rf"^\W*(?:{_INCLUSIVE_WORDS})", re.IGNORECASE)
_CUE = re.compile(rf"(?P<en>{_CUES_EN})|(?P<other>{_CUES_OTHER})", re.IGNORECASE)
_FILLER = rf"(?:[\s,]+|\b(?:the|on|am|le|el|de|dia|op|em|den|dem|{_WEEKDAY_RE})\b\.?)*"
_DATE = re.compile(
    rf"^{_FILLER}(?:"
    r"(?P<iso>(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2}))"
    r"|(?P<num>(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})(?:(?P=sep)(?P<ny>\d{2,4}))?)(?!\d)"
    rf"|(?P<dm>(?P<dd>\d{{1,2}})(?:st|nd|rd|th|er|º|°)?\.?\s*(?:de\s+|of\s+)?(?P<dmon>{_MONTH_RE})\b\.?"
    r"(?:,?\s*(?:de\s+)?(?P<dy>\d{4}))?)"
    rf"|(?P<md>(?P<mmon>{_MONTH_RE})\b\.?\s+(?P<md_d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s*(?P<my>\d{{4}}))?)"
    rf"|(?P<wd>{_WEEKDAY_RE})\b"
    # "hasta el 15 incluido", "until the 15th.": a bare day, only where it cannot be an hour
    r"|(?P<bare>(?P<bd>\d{1,2})(?:st|nd|rd|th|º|°|er)?)(?=\s*(?:[,.;)]|$|"
    rf"{_INCLUSIVE_WORDS}))"
    r")",
    re.IGNORECASE,
)
_WINDOW = 60


def find_return_date(text: str, sent: date | None) -> date | None:
    """The first unambiguous, plausible return date after a cue; None when there is none."""
    for cue in _CUE.finditer(text):
        found = _DATE.match(text[cue.end() : cue.end() + _WINDOW])
        if not found:
            continue
        options = _readings(found, sent, european=cue.group("other") is not None)
        plausible = {d for d in options if _plausible(d, sent)}
        if len(plausible) == 1:
            back = plausible.pop()
            after = text[cue.end() + found.end() : cue.end() + found.end() + 20]
            if _INCLUSIVE_CUE.search(cue.group(0)) or _INCLUSIVE_AFTER.match(after):
                return add_business_days(back, 1, None)  # the first weekday after
            return back
    return None


def _plausible(value: date, sent: date | None) -> bool:
    if sent is None:
        return True
    return sent - timedelta(days=1) <= value <= sent + timedelta(days=366)


def _readings(m: re.Match[str], sent: date | None, european: bool) -> set[date]:
    """Every calendar date the matched text could mean."""
    if m.group("iso"):
        return _make(int(m.group("iy")), int(m.group("im")), int(m.group("id")), sent)
    if m.group("num"):
        a, b, year = int(m.group("a")), int(m.group("b")), _year(m.group("ny"))
        if m.group("sep") == "." or european:
            return _make(year, b, a, sent)  # 14.03. is day.month everywhere it is written
        return _make(year, a, b, sent) | _make(year, b, a, sent)
    if m.group("dm"):
        month = _MONTH_OF[m.group("dmon").lower()]
        return _make(_year(m.group("dy")), month, int(m.group("dd")), sent)
    if m.group("md"):
        month = _MONTH_OF[m.group("mmon").lower()]
        return _make(_year(m.group("my")), month, int(m.group("md_d")), sent)
    if m.group("bare") and sent is not None:
        return _next_day_of_month(int(m.group("bd")), sent)
    if m.group("wd") and sent is not None:
        return {sent + relativedelta(days=1, weekday=_WEEKDAYS[m.group("wd").lower()](+1))}
    return set()


def _year(text: str | None) -> int | None:
    if not text:
        return None
    year = int(text)
    return year + 2000 if year < 100 else year


def _make(year: int | None, month: int, day: int, sent: date | None) -> set[date]:
    """A date; without a year, the next such date on or after the message's day."""
    if year is None:
        if sent is None:
            return set()
        candidates = [_safe(sent.year, month, day), _safe(sent.year + 1, month, day)]
        future = [d for d in candidates if d and d >= sent - timedelta(days=1)]
        return {future[0]} if future else set()
    made = _safe(year, month, day)
    return {made} if made else set()


def _next_day_of_month(day: int, sent: date) -> set[date]:
    """The day-of-month on or after the message's day: this month's, else next month's."""
    month_later = (sent.replace(day=1) + timedelta(days=32)).replace(day=1)
    for start in (sent.replace(day=1), month_later):
        made = _safe(start.year, start.month, day)
        if made and made >= sent - timedelta(days=1):
            return {made}
    return set()


def _safe(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
