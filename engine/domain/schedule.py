"""The scheduling maths: durations, business days, send windows, cron and jitter.

Pure and timezone-aware. Every function takes aware datetimes and returns UTC ones.
Local wall times are turned into instants the way RFC 5545 (and JavaScript Temporal's
"compatible" mode) does: an ambiguous time (fall-back) is its first occurrence, a time that
does not exist (spring-forward gap) moves forward by the length of the gap (02:30 -> 03:30).
A send window is a span of local time, so one that opens inside the gap opens when the gap
ends (03:00): that is the earliest instant whose local clock is inside the window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import overload
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from engine.domain.sequence import Duration, SendWindow, Step, Unit
from engine.domain.sequence import Sequence as SequenceModel
from engine.errors import ScheduleError

WORKWEEK = frozenset(range(5))  # Monday to Friday, when no window names the days
_CRON_TRIES = 2000  # firings skipped while the clock repeats an hour (fall-back), at most


def as_utc(moment: datetime, what: str = "a time") -> datetime:
    """`moment` in UTC; a naive datetime is refused because its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(
            f"{what} ({moment.isoformat()}) has no time zone; pass an aware datetime"
        )
    return moment.astimezone(UTC)


@overload
def assume_utc(moment: datetime) -> datetime: ...
@overload
def assume_utc(moment: None) -> None: ...
def assume_utc(moment: datetime | None) -> datetime | None:
    """`moment` with UTC as its zone when it has none: for sources that mean UTC but may not
    say so (nurture stores only UTC, yet a raw SQL read or an older sqlmodel gives naive
    times; a Date header may carry -0000). Unlike `as_utc`, which refuses a naive time whose
    zone would be a guess."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def as_timedelta(duration: Duration) -> timedelta:
    """Elapsed length of a duration (a business day counts as 24 hours here)."""
    per_unit = {
        Unit.minutes: timedelta(minutes=1),
        Unit.hours: timedelta(hours=1),
        Unit.days: timedelta(days=1),
        Unit.weeks: timedelta(weeks=1),
        Unit.business_days: timedelta(days=1),
    }
    return per_unit[duration.unit] * duration.amount


def wall_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall time as an instant: ambiguous -> first occurrence, gap -> moved forward."""
    # fold=0 is exactly RFC 5545: in a gap it applies the offset from before the gap.
    return datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=zone).astimezone(UTC)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def first_instant_at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The earliest instant whose local clock reads `day at` or later (a gap's end if skipped)."""
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    later = naive.replace(tzinfo=zone).astimezone(UTC)
    if _wall(later, zone) == naive:
        return later
    # In the gap: fold=1 applies the offset from after it, an instant before the transition.
    lo, hi = naive.replace(tzinfo=zone, fold=1).astimezone(UTC), later
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
        lo, hi = (lo, mid) if _wall(mid, zone) >= naive else (mid, hi)
    return hi


# --- durations -------------------------------------------------------------------------

def add_after(
    start: datetime, after: Duration, zone: ZoneInfo, window: SendWindow | None
) -> datetime:
    """`start` plus a step's `after`: elapsed minutes/hours, calendar days/weeks in `zone`.

    Days, weeks and business days keep the local time of day across DST changes. Business
    days are the window's days minus its holidays (Monday-Friday without a window).
    """
    start = as_utc(start, "the start")
    if after.unit in (Unit.minutes, Unit.hours) or after.amount == 0:
        return start + as_timedelta(after)
    local = start.astimezone(zone)
    if after.unit is Unit.business_days:
        day = add_business_days(local.date(), after.amount, window)
    else:
        day = local.date() + as_timedelta(after)
    return wall_to_utc(day, local.time(), zone)


def add_business_days(day: date, count: int, window: SendWindow | None) -> date:
    """The date `count` business days after `day` (weekends and holidays do not count)."""
    days = window.days if window is not None else WORKWEEK
    holidays = set(window.holidays) if window is not None else set()
    if count > 0 and not days:
        raise ScheduleError("the send window has no days, so no business day ever comes")
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() in days and day not in holidays:
            count -= 1
    return day


# --- send windows ----------------------------------------------------------------------

def _spans(after: date, zone: ZoneInfo, window: SendWindow) -> Iterator[tuple[datetime, datetime]]:
    """The window's open spans [opens, closes) as UTC instants, day by day from `after`."""
    holidays = set(window.holidays)
    # Every span is found within a week plus one day per holiday, if the window has days.
    for offset in range(8 + len(holidays)):
        day = after + timedelta(days=offset)
        if day.weekday() not in window.days or day in holidays:
            continue
        opens = first_instant_at(day, window.start, zone)
        closes = first_instant_at(day, window.end, zone)
        if opens < closes:  # a window that lies wholly in a DST gap is never open
            yield opens, closes
    raise ScheduleError(
        f"the send window ({window.hours}) is never open: it has no days that are not holidays"
    )


def open_span(at: datetime, zone: ZoneInfo, window: SendWindow) -> tuple[datetime, datetime]:
    """The first open span of `window` that ends after `at` (it may already have begun)."""
    at = as_utc(at)
    for opens, closes in _spans(at.astimezone(zone).date(), zone, window):
        if closes > at:
            return opens, closes
    raise AssertionError("unreachable: _spans raises when it runs out")  # pragma: no cover


def next_open(at: datetime, zone: ZoneInfo, window: SendWindow | None) -> tuple[datetime, bool]:
    """The earliest instant >= `at` inside the window, and whether `at` had to move."""
    at = as_utc(at)
    if window is None:
        return at, False
    opens, _ = open_span(at, zone, window)
    return (at, False) if opens <= at else (opens, True)


# --- cron and jitter -------------------------------------------------------------------

def cron_next(expr: str, after: datetime, zone: ZoneInfo) -> datetime:
    """The first firing of `expr` strictly after `after`, reading the fields as local time."""
    after = as_utc(after, "the cron start")
    # croniter walks naive local wall time, so "0 10 * * *" is 10:00 local in summer and
    # winter alike; each wall time is then placed in the zone (RFC 5545 rules).
    try:
        firings = croniter(expr, _wall(after, zone))
        for _ in range(_CRON_TRIES):
            naive = firings.get_next(datetime)
            moment = wall_to_utc(naive.date(), naive.time(), zone)
            if moment > after:  # a repeated hour (fall-back) can map behind `after`
                return moment
    except CroniterError as exc:  # a bad expression, or one that never fires (30 February)
        raise ScheduleError(f"cron '{expr}' has no next firing: {exc}") from exc
    raise ScheduleError(f"cron '{expr}' has no firing after {after.isoformat()}")


def jitter(key: str, max_delay: Duration) -> timedelta:
    """A delay in [0, max_delay), the same for the same key (a replay computes the same time)."""
    return jitter_within(key, as_timedelta(max_delay))


def jitter_within(key: str, bound: timedelta) -> timedelta:
    """A whole-second delay in [0, bound), derived from a hash of `key`."""
    seconds = int(bound.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % seconds)


# --- a step's due time -----------------------------------------------------------------

def due_at(
    step: Step,
    seq: SequenceModel,
    previous_done_at: datetime,
    occurrence: int,
    zone: ZoneInfo,
    key: str,
) -> datetime:
    """When a step falls due: `after` or `cron`, then the step's window, then jitter.

    Jitter is added only when the window moved the time or the step is a cron step (so mail
    does not leave at 09:00:00 sharp); it is clamped so the touch stays inside the window.
    """
    window = step.window(seq.send_window)
    if step.cron is not None:
        planned = cron_next(step.cron, previous_done_at, zone)
    else:
        assert step.after is not None  # the model requires one of after/cron
        planned = add_after(previous_done_at, step.after, zone, window)
    spread = jitter_key(key, step, occurrence)
    if window is None:
        return planned + jitter(spread, seq.jitter) if step.cron else planned
    opens, closes = open_span(planned, zone, window)
    if opens <= planned and step.cron is None:
        return planned
    at = max(opens, planned)
    return at + jitter_within(spread, min(as_timedelta(seq.jitter), closes - at))


def jitter_key(key: str, step: Step, occurrence: int) -> str:
    """Each touch of an enrollment gets its own jitter, stable across replays."""
    return f"{key}/{step.name}/{occurrence}"
