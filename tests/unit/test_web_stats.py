"""The marketer's numbers (store/stats.py counting, no database): what counts against which
step, reply rate and time to first touch."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

from engine.store.stats import SequenceStats, _tally, _Touch

T0 = datetime(2026, 3, 2, 9, 0)


def enrollment(eid: int, stop_reason: str = "", sequence: str = "demo") -> SimpleNamespace:
    return SimpleNamespace(id=eid, sequence=sequence, enrolled_at=T0, stop_reason=stop_reason)


def touch(tid: int, eid: int, step: int, minutes: float | None, state: str = "sent",
          channel: str = "email", code: int | None = None) -> _Touch:
    sent = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return _Touch(tid, eid, eid, "demo", step, f"step{step}", channel, state, sent, code)


def inbound(lead: int, touch_id: int | None, kind: str, minutes: float) -> SimpleNamespace:
    return SimpleNamespace(lead_id=lead, touch_id=touch_id, kind=kind,
                           received_at=T0 + timedelta(minutes=minutes))


def stats(enrollments: list, touches: list, inbound_rows: list) -> SequenceStats:  # type: ignore[type-arg]
    [only] = _tally(enrollments, touches, inbound_rows)
    return only


def test_a_matched_reply_counts_against_the_step_it_answered() -> None:
    """A reply whose touch the watcher matched counts on that step and once on the sequence."""
    s = stats([enrollment(1)], [touch(1, 1, 0, 1), touch(2, 1, 1, 60)],
              [inbound(1, 1, "human_reply", 120)])
    assert s.totals.replied == 1
    assert [c.replied for c in s.steps] == [1, 0]


def test_an_unmatched_reply_counts_against_the_last_email_before_it() -> None:
    """Matched by sender only: the lead's last email sent before the reply arrived."""
    s = stats([enrollment(1)], [touch(1, 1, 0, 1), touch(2, 1, 1, 60), touch(3, 1, 2, 600)],
              [inbound(1, None, "human_reply", 90)])
    assert [c.replied for c in s.steps] == [0, 1, 0]


def test_auto_replies_bounces_and_smtp_failures() -> None:
    """Auto-replies and DSN bounces count on their step; a 5xx at send time is a bounce too."""
    s = stats([enrollment(1), enrollment(2)],
              [touch(1, 1, 0, 1), touch(2, 2, 0, None, state="failed", code=550)],
              [inbound(1, 1, "auto_reply", 5), inbound(1, 1, "bounce_hard", 6)])
    assert (s.totals.auto_replied, s.totals.bounced, s.totals.failed) == (1, 2, 0)
    assert s.steps[0].bounced == 2 and s.totals.replied == 0


def test_a_touch_that_failed_without_a_5xx_is_failed_not_bounced() -> None:
    """A template that could not render (no SMTP code) and retries given up on a 4xx: failed,
    never bounced, so the bounce rate stays the addresses that refused mail."""
    s = stats([enrollment(1), enrollment(2), enrollment(3)],
              [touch(1, 1, 0, None, state="failed"),
               touch(2, 2, 0, None, state="failed", code=451),
               touch(3, 3, 0, None, state="failed", code=554)], [])
    assert (s.totals.bounced, s.totals.failed) == (1, 2)
    assert (s.steps[0].bounced, s.steps[0].failed, s.steps[0].sent) == (1, 2, 0)


def test_a_task_done_is_not_an_email_sent() -> None:
    """A call marked done counts under tasks done: not sent, not a lead reached by email."""
    s = stats([enrollment(1), enrollment(2)],
              [touch(1, 1, 0, 1), touch(2, 1, 1, 60, state="done", channel="task"),
               touch(3, 2, 1, 30, state="done", channel="task")], [])
    assert (s.totals.sent, s.totals.tasks_done, s.totals.contacted) == (1, 2, 1)
    assert [(c.sent, c.tasks_done) for c in s.steps] == [(1, 0), (0, 2)]
    assert s.steps[1].reply_rate is None and s.totals.median_to_touch == 60.0


def test_an_unsubscribe_counts_against_the_last_email_of_its_enrollment() -> None:
    """An enrollment stopped by an unsubscribe counts on the last step it was sent."""
    s = stats([enrollment(1, stop_reason="unsubscribe"), enrollment(2)],
              [touch(1, 1, 0, 1), touch(2, 1, 1, 60), touch(3, 2, 0, 1)], [])
    assert s.totals.unsubscribed == 1
    assert [c.unsubscribed for c in s.steps] == [0, 1]


def test_reply_rate_and_median_time_to_first_touch() -> None:
    """Reply rate is replies per lead reached; time to touch is enrollment -> first email."""
    s = stats([enrollment(1), enrollment(2), enrollment(3)],
              [touch(1, 1, 0, 0.5), touch(2, 2, 0, 1.5), touch(3, 3, 0, 2.5)],
              [inbound(2, 2, "human_reply", 10)])
    assert s.totals.enrolled == 3 and s.totals.contacted == 3
    assert s.totals.reply_rate == 1 / 3
    assert s.totals.median_to_touch == 90.0
    assert s.steps[0].median_to_touch == 90.0


def test_a_sequence_without_sends_has_no_rates() -> None:
    """Enrolled but nothing sent yet: counts are zero and rates are unknown, not 0%."""
    s = stats([enrollment(1)], [touch(1, 1, 0, None, state="claimed")], [])
    assert (s.totals.enrolled, s.totals.sent) == (1, 0)
    assert s.totals.reply_rate is None and s.totals.median_to_touch is None
    assert s.steps[0].enrolled == 1


def test_steps_and_sequences_nobody_reached_are_listed_with_zeros() -> None:
    """Given the catalog's step names, unreached steps and empty sequences show as zeros."""
    out = _tally([enrollment(1)], [touch(1, 1, 0, 1)], [],
                 {"demo": ["first", "second", "third"], "ripen": ["monthly"]})
    demo, ripen = out
    assert [c.name for c in demo.steps] == ["first", "second", "third"]
    assert [c.sent for c in demo.steps] == [1, 0, 0]
    assert (ripen.totals.name, ripen.totals.enrolled, ripen.steps[0].sent) == ("ripen", 0, 0)
