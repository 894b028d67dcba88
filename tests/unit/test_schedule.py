"""The scheduling maths: durations, business days, send windows, DST, cron, jitter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.domain.schedule import (
    add_after,
    assume_utc,
    cron_next,
    due_at,
    jitter,
    jitter_key,
    next_open,
)
from engine.domain.sequence import Duration, SendWindow, Sequence
from engine.errors import ScheduleError

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
LA = ZoneInfo("America/Los_Angeles")
OFFICE = SendWindow(days="mon-fri", hours="08:30-17:30")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def dur(text: str) -> Duration:
    return Duration.parse(text)


def seq_with(step: dict, **extra: object) -> Sequence:
    return Sequence.model_validate({"name": "s", "steps": [step], **extra})


# --- naive times from sources that mean UTC ---------------------------------------------

def test_assume_utc_gives_a_naive_time_the_utc_zone() -> None:
    """A naive time (SQLite's, a Date header's -0000) is read as UTC, the clock unchanged."""
    assert assume_utc(datetime(2026, 3, 2, 9, 0)) == utc(2026, 3, 2, 9, 0)
    assert assume_utc(datetime(2026, 3, 2, 9, 0)).tzinfo is UTC


def test_assume_utc_keeps_an_aware_time_and_none() -> None:
    """An aware time keeps its own zone; None stays None (a column that is not set)."""
    berlin = datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN)
    assert assume_utc(berlin).tzinfo is BERLIN
    assert assume_utc(None) is None


# --- elapsed and calendar durations ----------------------------------------------------

def test_minutes_are_elapsed_time_across_spring_forward() -> None:
    """60 minutes from 01:30 EST on the spring-forward night is 03:30 EDT (one real hour)."""
    start = datetime(2026, 3, 8, 1, 30, tzinfo=NY)
    assert add_after(start, dur("60m"), NY, None) == utc(2026, 3, 8, 7, 30)


def test_hours_are_elapsed_time_across_fall_back() -> None:
    """2 hours from 00:30 EDT on the fall-back night is 01:30 EST (the second 01:30)."""
    start = datetime(2026, 11, 1, 0, 30, tzinfo=NY)
    assert add_after(start, dur("2h"), NY, None) == utc(2026, 11, 1, 6, 30)


def test_result_is_utc() -> None:
    """Results are UTC-aware whatever zone the start was given in."""
    result = add_after(datetime(2026, 1, 5, 9, 0, tzinfo=TOKYO), dur("1 day"), TOKYO, None)
    assert result.tzinfo is UTC
    assert result == utc(2026, 1, 6, 0, 0)


def test_zero_delay_is_the_start_itself() -> None:
    """`after: 0m` (and 0 days) returns the start instant unchanged."""
    start = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NY)  # the second 01:30
    assert add_after(start, dur("0m"), NY, OFFICE) == utc(2026, 11, 1, 6, 30)
    assert add_after(start, dur("0 days"), NY, OFFICE) == utc(2026, 11, 1, 6, 30)


@pytest.mark.parametrize(
    ("zone", "before", "after_utc"),
    [
        (NY, datetime(2026, 3, 7, 9, 30), utc(2026, 3, 8, 13, 30)),  # EST -> EDT
        (NY, datetime(2026, 10, 31, 9, 30), utc(2026, 11, 1, 14, 30)),  # EDT -> EST
        (BERLIN, datetime(2026, 3, 28, 9, 30), utc(2026, 3, 29, 7, 30)),  # CET -> CEST
        (BERLIN, datetime(2026, 10, 24, 9, 30), utc(2026, 10, 25, 8, 30)),  # CEST -> CET
    ],
)
def test_one_day_keeps_local_time_across_dst(
    zone: ZoneInfo, before: datetime, after_utc: datetime
) -> None:
    """"1 day" from 09:30 local the day before a DST change is 09:30 local on the day."""
    result = add_after(before.replace(tzinfo=zone), dur("1 day"), zone, None)
    assert result == after_utc
    assert result.astimezone(zone).replace(tzinfo=None) == before + timedelta(days=1)


def test_three_days_is_calendar_days_across_dst() -> None:
    """"3 days" from Friday 10:00 EST is Monday 10:00 EDT, 71 real hours later."""
    start = datetime(2026, 3, 6, 10, 0, tzinfo=NY)
    assert add_after(start, dur("3 days"), NY, None) == utc(2026, 3, 9, 14, 0)


def test_one_week_keeps_local_time_across_dst() -> None:
    """"1 week" from Monday 10:00 CET is the next Monday 10:00 CEST."""
    start = datetime(2026, 3, 23, 10, 0, tzinfo=BERLIN)
    assert add_after(start, dur("1 week"), BERLIN, None) == utc(2026, 3, 30, 8, 0)


def test_nonexistent_local_time_moves_forward() -> None:
    """"1 day" landing on 02:30 in the spring-forward gap moves forward by the gap: 03:30 EDT."""
    start = datetime(2026, 3, 7, 2, 30, tzinfo=NY)
    assert add_after(start, dur("1 day"), NY, None) == utc(2026, 3, 8, 7, 30)


def test_ambiguous_local_time_takes_first_occurrence() -> None:
    """"1 day" landing on 01:30 on the fall-back night is the first 01:30 (EDT)."""
    start = datetime(2026, 10, 31, 1, 30, tzinfo=NY)
    assert add_after(start, dur("1 day"), NY, None) == utc(2026, 11, 1, 5, 30)


def test_berlin_gap_moves_forward() -> None:
    """"1 day" landing on 02:30 in Berlin's gap (2026-03-29) is 03:30 CEST."""
    start = datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN)
    assert add_after(start, dur("1 day"), BERLIN, None) == utc(2026, 3, 29, 1, 30)


# --- business days ---------------------------------------------------------------------

def test_business_day_skips_the_weekend() -> None:
    """"1 business day" from Friday 09:00 is Monday 09:00."""
    start = datetime(2026, 1, 9, 9, 0, tzinfo=NY)
    assert add_after(start, dur("1 business day"), NY, None) == utc(2026, 1, 12, 14, 0)


def test_business_days_from_thursday() -> None:
    """"2 business days" from Thursday is Monday."""
    start = datetime(2026, 1, 8, 11, 15, tzinfo=NY)
    assert add_after(start, dur("2 business days"), NY, None) == utc(2026, 1, 12, 16, 15)


def test_business_day_from_saturday_is_monday() -> None:
    """"1 business day" counted from a Saturday lands on Monday."""
    start = datetime(2026, 1, 10, 14, 0, tzinfo=NY)
    assert add_after(start, dur("1 business day"), NY, None) == utc(2026, 1, 12, 19, 0)


def test_business_days_skip_window_holidays() -> None:
    """A holiday of the window is not a business day: Thursday + 2 skips Monday's holiday."""
    window = SendWindow(days="mon-fri", hours="08:30-17:30", holidays=[date(2026, 1, 12)])
    start = datetime(2026, 1, 8, 9, 0, tzinfo=NY)
    assert add_after(start, dur("2 business days"), NY, window) == utc(2026, 1, 13, 14, 0)


def test_business_days_are_the_window_days() -> None:
    """With a mon,wed,fri window, 1 business day after Monday is Wednesday."""
    window = SendWindow(days="mon,wed,fri")
    start = datetime(2026, 1, 5, 9, 0, tzinfo=BERLIN)
    assert add_after(start, dur("1 business day"), BERLIN, window) == utc(2026, 1, 7, 8, 0)


def test_business_days_keep_local_time_across_dst() -> None:
    """"1 business day" from Friday 09:30 EST (before 2026-03-08) is Monday 09:30 EDT."""
    start = datetime(2026, 3, 6, 9, 30, tzinfo=NY)
    assert add_after(start, dur("1 business day"), NY, OFFICE) == utc(2026, 3, 9, 13, 30)


def test_a_window_without_days_is_refused_by_the_schema() -> None:
    """A sequence file cannot declare a send window with no days."""
    with pytest.raises(ValueError, match="at least one day"):
        SendWindow(days=[])


def test_business_days_with_a_window_without_days_fail_clearly() -> None:
    """Defence in depth: a window built without validation still fails with a ScheduleError."""
    empty = SendWindow.model_construct(days=frozenset(), hours="08:00-18:00", holidays=[])
    with pytest.raises(ScheduleError, match="no days"):
        add_after(utc(2026, 1, 5, 9), dur("1 business day"), NY, empty)


# --- send windows ----------------------------------------------------------------------

def test_inside_the_window_does_not_move() -> None:
    """A time inside the window is returned as is, with moved=False."""
    at = datetime(2026, 1, 14, 10, 0, tzinfo=NY)
    assert next_open(at, NY, OFFICE) == (utc(2026, 1, 14, 15, 0), False)


def test_no_window_is_any_time() -> None:
    """window None: Sunday 03:00 is fine."""
    at = datetime(2026, 1, 11, 3, 0, tzinfo=NY)
    assert next_open(at, NY, None) == (utc(2026, 1, 11, 8, 0), False)


def test_window_is_in_the_leads_zone() -> None:
    """The same instant is outside the window in Tokyo (05:00) and inside in Los Angeles."""
    at = utc(2026, 1, 14, 20, 0)  # Thu 05:00 in Tokyo, Wed 12:00 in Los Angeles
    assert next_open(at, TOKYO, OFFICE) == (utc(2026, 1, 14, 23, 30), True)
    assert next_open(at, LA, OFFICE) == (at, False)


def test_after_friday_close_moves_to_monday_open() -> None:
    """Friday 18:00 moves to Monday 08:30 local."""
    at = datetime(2026, 1, 16, 18, 0, tzinfo=NY)
    assert next_open(at, NY, OFFICE) == (utc(2026, 1, 19, 13, 30), True)


def test_window_end_is_exclusive() -> None:
    """17:30 sharp is already closed: the next opening is the next day's 08:30."""
    at = datetime(2026, 1, 14, 17, 30, tzinfo=NY)
    assert next_open(at, NY, OFFICE) == (utc(2026, 1, 15, 13, 30), True)


def test_window_skips_holidays() -> None:
    """A holiday Monday is skipped: Friday evening moves to Tuesday 08:30."""
    window = SendWindow(days="mon-fri", hours="08:30-17:30", holidays=[date(2026, 1, 19)])
    at = datetime(2026, 1, 16, 18, 0, tzinfo=NY)
    assert next_open(at, NY, window) == (utc(2026, 1, 20, 13, 30), True)


def test_window_opening_in_the_new_york_gap_opens_at_the_gap_end() -> None:
    """A window opening at 02:30 on 2026-03-08 (no such time) opens at 03:00 EDT."""
    window = SendWindow(days="all", hours="02:30-05:00")
    at = datetime(2026, 3, 8, 1, 0, tzinfo=NY)
    assert next_open(at, NY, window) == (utc(2026, 3, 8, 7, 0), True)


def test_window_opening_in_the_berlin_gap_opens_at_the_gap_end() -> None:
    """A window opening at 02:15 on 2026-03-29 in Berlin opens at 03:00 CEST."""
    window = SendWindow(days="all", hours="02:15-04:00")
    at = datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)
    assert next_open(at, BERLIN, window) == (utc(2026, 3, 29, 1, 0), True)


def test_window_wholly_inside_the_gap_is_closed_that_day() -> None:
    """A 02:00-02:45 window does not exist on 2026-03-08 in New York: next is 03-09."""
    window = SendWindow(days="all", hours="02:00-02:45")
    at = datetime(2026, 3, 8, 0, 0, tzinfo=NY)
    assert next_open(at, NY, window) == (utc(2026, 3, 9, 6, 0), True)


def test_window_without_days_fails_clearly() -> None:
    """A window that is never open raises a ScheduleError instead of looping."""
    with pytest.raises(ScheduleError, match="never open"):
        empty = SendWindow.model_construct(days=frozenset(), hours="08:00-18:00", holidays=[])
        next_open(utc(2026, 1, 5, 9), NY, empty)


def test_naive_datetime_is_refused() -> None:
    """A naive datetime would be read in the machine's zone: refused with a clear error."""
    with pytest.raises(ScheduleError, match="no time zone"):
        next_open(datetime(2026, 1, 5, 9), NY, OFFICE)


# --- cron ------------------------------------------------------------------------------

def test_first_tuesday_cron_stays_ten_local_across_berlin_dst() -> None:
    """"0 10 * * tue#1" in Berlin fires at 10:00 local all year (09:00Z in winter, 08:00Z
    in summer)."""
    firings, at = [], utc(2026, 1, 1)
    for _ in range(12):
        at = cron_next("0 10 * * tue#1", at, BERLIN)
        firings.append(at)
    assert firings == [
        utc(2026, 1, 6, 9), utc(2026, 2, 3, 9), utc(2026, 3, 3, 9), utc(2026, 4, 7, 8),
        utc(2026, 5, 5, 8), utc(2026, 6, 2, 8), utc(2026, 7, 7, 8), utc(2026, 8, 4, 8),
        utc(2026, 9, 1, 8), utc(2026, 10, 6, 8), utc(2026, 11, 3, 9), utc(2026, 12, 1, 9),
    ]
    assert {f.astimezone(BERLIN).hour for f in firings} == {10}


def test_cron_is_strictly_after() -> None:
    """From the very instant of a firing, the next one is a month later."""
    assert cron_next("0 10 * * tue#1", utc(2026, 1, 6, 9), BERLIN) == utc(2026, 2, 3, 9)


def test_cron_in_the_gap_moves_forward() -> None:
    """A daily 02:30 cron on New York's spring-forward day fires at 03:30 EDT."""
    assert cron_next("30 2 * * *", utc(2026, 3, 7, 17), NY) == utc(2026, 3, 8, 7, 30)


def test_cron_fires_once_on_the_fall_back_night() -> None:
    """A daily 01:30 cron fires at the first 01:30 on 2026-11-01, then on 11-02."""
    first = cron_next("30 1 * * *", utc(2026, 11, 1, 4), NY)
    assert first == utc(2026, 11, 1, 5, 30)
    assert cron_next("30 1 * * *", first, NY) == utc(2026, 11, 2, 6, 30)


def test_cron_from_the_repeated_hour_does_not_go_back() -> None:
    """From the second 01:15 (EST), the 01:30 already passed in EDT: next is 11-02."""
    second = datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NY)
    assert cron_next("30 1 * * *", second, NY) == utc(2026, 11, 2, 6, 30)


def test_cron_that_never_fires_fails_clearly() -> None:
    """30 February never comes: a ScheduleError names the expression."""
    with pytest.raises(ScheduleError, match="0 0 30 2"):
        cron_next("0 0 30 2 *", utc(2026, 1, 1), NY)


# --- jitter ----------------------------------------------------------------------------

def test_jitter_is_deterministic() -> None:
    """The same key gives the same delay (a replay computes the same time)."""
    assert jitter("enrollment-42", dur("3m")) == jitter("enrollment-42", dur("3m"))
    # Pinned: changing the hash would move every touch already planned in a database.
    assert jitter("enrollment-42", dur("3m")) == timedelta(seconds=53)


def test_jitter_differs_between_keys() -> None:
    """Different keys spread out: 200 keys give many distinct delays."""
    delays = {jitter(f"enrollment-{i}", dur("3m")) for i in range(200)}
    assert len(delays) > 100


def test_jitter_is_bounded() -> None:
    """Every delay is whole seconds in [0, max)."""
    for i in range(500):
        delay = jitter(f"k{i}", dur("2m"))
        assert timedelta(0) <= delay < timedelta(minutes=2)
        assert delay.microseconds == 0


def test_zero_jitter_is_zero() -> None:
    """`jitter: 0m` switches jitter off."""
    assert jitter("anything", dur("0m")) == timedelta(0)


# --- a step's due time -----------------------------------------------------------------

def test_immediate_step_with_window_any_is_due_at_once() -> None:
    """`after: 0m` + `send_window: any` on Saturday night is due exactly then, no jitter."""
    seq = seq_with({"name": "a", "after": "0m", "send_window": "any",
                    "email": {"template": "t.j2"}})
    done = datetime(2026, 1, 10, 23, 0, tzinfo=NY)
    assert due_at(seq.steps[0], seq, done, 0, NY, "e1") == utc(2026, 1, 11, 4, 0)


def test_immediate_step_with_inherited_window_waits_for_the_opening() -> None:
    """`after: 0m` inheriting the window on Saturday is due Monday 08:30 plus jitter."""
    seq = seq_with({"name": "a", "after": "0m", "email": {"template": "t.j2"}},
                   send_window={"days": "mon-fri", "hours": "08:30-17:30"})
    done = datetime(2026, 1, 10, 23, 0, tzinfo=NY)
    result = due_at(seq.steps[0], seq, done, 0, NY, "e1")
    opening = utc(2026, 1, 12, 13, 30)
    assert result == opening + jitter(jitter_key("e1", seq.steps[0], 0), seq.jitter)
    assert result == utc(2026, 1, 12, 13, 32, 26)


def test_step_inside_the_window_gets_no_jitter() -> None:
    """"2 business days" from Monday 09:03 is Wednesday 09:03 exactly."""
    seq = seq_with({"name": "a", "after": "2 business days", "email": {"template": "t.j2"}})
    done = datetime(2026, 1, 12, 9, 3, tzinfo=NY)
    assert due_at(seq.steps[0], seq, done, 0, NY, "e1") == utc(2026, 1, 14, 14, 3)


def test_jitter_is_clamped_to_the_window_end() -> None:
    """With a one-minute window and an hour of jitter, the touch stays inside the minute."""
    seq = seq_with({"name": "a", "after": "0m", "email": {"template": "t.j2"}},
                   send_window={"days": "all", "hours": "08:30-08:31"}, jitter="1h")
    for key in ("a", "b", "c", "d", "e"):
        result = due_at(seq.steps[0], seq, utc(2026, 1, 12, 0), 0, NY, key)
        assert utc(2026, 1, 12, 13, 30) <= result < utc(2026, 1, 12, 13, 31)


def test_cron_step_gets_jitter_inside_the_window() -> None:
    """A cron step at 10:00 local, inside the window, still gets its jitter."""
    seq = seq_with({"name": "a", "cron": "0 10 * * tue#1", "repeat": 3,
                    "email": {"template": "t.j2"}})
    result = due_at(seq.steps[0], seq, utc(2026, 1, 1), 1, BERLIN, "e7")
    assert result == utc(2026, 1, 6, 9) + jitter(jitter_key("e7", seq.steps[0], 1), seq.jitter)
    assert result == utc(2026, 1, 6, 9, 0, 13)


def test_cron_step_outside_the_window_moves_to_the_opening() -> None:
    """A 07:00 cron with an 08:30 window is due at 08:30 plus jitter."""
    seq = seq_with({"name": "a", "cron": "0 7 * * mon", "email": {"template": "t.j2"}},
                   send_window={"days": "mon-fri", "hours": "08:30-17:30"})
    result = due_at(seq.steps[0], seq, utc(2026, 1, 6), 0, TOKYO, "x")
    opening = utc(2026, 1, 11, 23, 30)  # Monday 08:30 in Tokyo
    assert opening <= result < opening + timedelta(minutes=3)


def test_due_time_differs_by_lead_zone() -> None:
    """"1 day" from the same instant lands in each lead's own window."""
    seq = seq_with({"name": "a", "after": "1 day", "email": {"template": "t.j2"}},
                   send_window={"days": "mon-fri", "hours": "08:30-17:30"}, jitter="0m")
    done = utc(2026, 1, 13, 20, 0)  # Tue 12:00 in LA, Wed 05:00 in Tokyo
    assert due_at(seq.steps[0], seq, done, 0, LA, "k") == utc(2026, 1, 14, 20, 0)
    assert due_at(seq.steps[0], seq, done, 0, TOKYO, "k") == utc(2026, 1, 14, 23, 30)
