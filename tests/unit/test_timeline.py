"""The simulator behind `nurture simulate`: dated touches, skips, on_finish, reply, stages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.domain.sequence import Sequence
from engine.domain.timeline import simulate, skip_reason
from engine.errors import ConfigError, UnknownSequence

NY = ZoneInfo("America/New_York")

DEMO = Sequence.model_validate({
    "name": "demo",
    "send_window": {"days": "mon-fri", "hours": "08:30-17:30"},
    "jitter": "0m",
    "on_finish": {"enroll": "ripen"},
    "steps": [
        {"name": "first-touch", "after": "0m", "send_window": "any",
         "email": {"template": "demo/first-touch.md.j2"}},
        {"name": "case-study", "after": "2 business days",
         "email": {"thread": "previous", "template": {
             "awareness": "demo/case-study.md.j2", "decision": "demo/roi.md.j2"}}},
        {"name": "call", "after": "1 business day",
         "task": {"kind": "call", "note": "Call {{ lead.first_name }}"}},
        {"name": "pricing", "after": "1 day", "when": {"stage": "decision"},
         "email": {"template": "demo/pricing.md.j2"}},
        {"name": "breakup", "after": "7 days", "email": {"template": "demo/breakup.md.j2"}},
    ],
})
RIPEN = Sequence.model_validate({
    "name": "ripen",
    "jitter": "0m",
    "steps": [{"name": "monthly", "cron": "0 10 * * tue#1", "repeat": 3,
               "email": {"template": "ripen/monthly.md.j2"}}],
})
SEQUENCES = {"demo": DEMO, "ripen": RIPEN}
ADA = {"email": "ada@example.com", "first_name": "Ada", "stage": "awareness",
       "timezone": "America/New_York"}
START = datetime(2026, 1, 8, 20, 0, tzinfo=NY)  # Thursday evening, after hours


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run(**kwargs: object) -> list:
    args = {"lead": ADA, "start": START, "default_timezone": "Europe/Berlin", **kwargs}
    return simulate(SEQUENCES, "demo", **args)  # type: ignore[arg-type]


def test_timeline_dates_every_touch() -> None:
    """Each step gets its exact time in the lead's zone, with status and touch number."""
    rows = run()
    assert [(r.sequence, r.step, r.at, r.status, r.touch_number) for r in rows] == [
        ("demo", "first-touch", utc(2026, 1, 9, 1, 0), "scheduled", 1),
        ("demo", "case-study", utc(2026, 1, 13, 13, 30), "scheduled", 2),
        ("demo", "call", utc(2026, 1, 14, 13, 30), "scheduled", 3),
        ("demo", "pricing", utc(2026, 1, 15, 13, 30), "skipped", None),
        ("demo", "breakup", utc(2026, 1, 22, 13, 30), "scheduled", 4),
        ("ripen", "monthly", utc(2026, 2, 3, 15, 0), "scheduled", 1),
        ("ripen", "monthly", utc(2026, 3, 3, 15, 0), "scheduled", 2),
        ("ripen", "monthly", utc(2026, 4, 7, 14, 0), "scheduled", 3),
    ]


def test_rows_carry_local_time_and_zone() -> None:
    """`local` is the instant in the lead's zone and `zone` names it."""
    first = run()[0]
    assert first.zone == "America/New_York"
    assert first.local == datetime(2026, 1, 8, 20, 0, tzinfo=NY)
    assert first.local.utcoffset() == NY.utcoffset(datetime(2026, 1, 8))


def test_lead_without_zone_uses_the_default() -> None:
    """A lead with no time zone is scheduled in the default zone."""
    rows = run(lead={**ADA, "timezone": None}, max_entries=2)
    assert rows[0].zone == "Europe/Berlin"
    assert rows[1].at == utc(2026, 1, 13, 7, 30)  # Tuesday 08:30 in Berlin


def test_email_and_task_rows() -> None:
    """Email rows name the template for the stage; task rows name the kind and note source."""
    rows = run()
    assert rows[1].channel == "email" and rows[1].template == "demo/case-study.md.j2"
    assert (rows[2].channel, rows[2].task_kind, rows[2].task_note, rows[2].template) == (
        "task", "call", "Call {{ lead.first_name }}", None
    )


def test_skipped_step_says_why() -> None:
    """A `when:` that is false gives a skipped row explaining the condition and the value."""
    skipped = run()[3]
    assert skipped.status == "skipped"
    assert skipped.reason == "when: stage is decision, lead's stage is awareness"


def test_next_at_is_the_following_touch_that_applies() -> None:
    """next_at (for next_touch_at) skips the skipped step and is None at the sequence end."""
    rows = run()
    assert [r.next_at for r in rows[:5]] == [
        utc(2026, 1, 13, 13, 30), utc(2026, 1, 14, 13, 30), utc(2026, 1, 22, 13, 30),
        utc(2026, 1, 22, 13, 30), None,
    ]
    assert rows[5].next_at == utc(2026, 3, 3, 15, 0)


def test_on_finish_enrolls_into_the_next_sequence_when_the_last_step_is_done() -> None:
    """The second sequence counts from the moment the first one's last touch was done."""
    rows = run(max_entries=6)
    assert rows[-1].sequence == "ripen"
    assert rows[-1].at == utc(2026, 2, 3, 15, 0)  # first Tuesday after 2026-01-22
    assert rows[-1].occurrence == 0


def test_reply_stops_the_sequence() -> None:
    """A reply on day 6 gives a final 'stopped' row; nothing is planned after it."""
    reply = datetime(2026, 1, 14, 10, 0, tzinfo=NY)
    rows = run(reply_at=reply)
    assert [(r.step, r.status) for r in rows] == [
        ("first-touch", "scheduled"), ("case-study", "scheduled"), ("call", "scheduled"),
        ("pricing", "stopped"),
    ]
    assert rows[-1].at == utc(2026, 1, 14, 15, 0)
    assert rows[-1].reason == (
        "reply on Wed 2026-01-14 10:00 EST stops the sequence; handed to a rep"
    )


def test_reply_at_the_due_time_wins() -> None:
    """A reply seen at the very moment a touch is due stops that touch."""
    rows = run(reply_at=utc(2026, 1, 13, 13, 30))
    assert [(r.step, r.status) for r in rows][-2:] == [
        ("first-touch", "scheduled"), ("case-study", "stopped")
    ]


def test_reply_in_the_follow_on_sequence_stops_it() -> None:
    """A reply during the long-term track stops the track."""
    rows = run(reply_at=utc(2026, 3, 1))
    assert (rows[-1].sequence, rows[-1].status, rows[-1].occurrence) == ("ripen", "stopped", 1)


def test_reply_after_everything_changes_nothing() -> None:
    """A reply after the last touch of the last sequence adds no row."""
    assert run(reply_at=utc(2027, 1, 1)) == run()


def test_stage_change_switches_template_and_when() -> None:
    """Moving to 'decision' mid-sequence picks the decision template and runs the pricing
    step that awareness skipped."""
    rows = run(stage_changes=[(utc(2026, 1, 12, 12), "decision")])
    assert rows[0].stage == "awareness" and rows[0].template == "demo/first-touch.md.j2"
    assert (rows[1].stage, rows[1].template) == ("decision", "demo/roi.md.j2")
    assert (rows[3].step, rows[3].status, rows[3].touch_number) == ("pricing", "scheduled", 4)
    assert rows[2].next_at == utc(2026, 1, 15, 13, 30)
    assert rows[4].touch_number == 5


def test_on_finish_cycle_is_bounded_by_max_entries() -> None:
    """Two sequences enrolling into each other stop after max_entries rows."""
    def seq(name: str, nxt: str) -> Sequence:
        return Sequence.model_validate({
            "name": name, "on_finish": {"enroll": nxt}, "send_window": "any",
            "steps": [{"name": "only", "after": "1 day", "email": {"template": "t.j2"}}],
        })
    loop = {"a": seq("a", "b"), "b": seq("b", "a")}
    rows = simulate(loop, "a", ADA, START, "UTC", max_entries=10)
    assert len(rows) == 10
    assert [r.sequence for r in rows[:4]] == ["a", "b", "a", "b"]
    assert rows[-1].at == utc(2026, 1, 19, 1, 0)


def test_unknown_on_finish_target_is_a_clear_error() -> None:
    """on_finish naming a missing sequence says which sequence points where."""
    with pytest.raises(UnknownSequence, match="sequence 'demo' enrolls into 'ripen'"):
        simulate({"demo": DEMO}, "demo", ADA, START, "UTC")


def test_unknown_sequence_name_is_a_clear_error() -> None:
    """Simulating a sequence that does not exist lists the known ones."""
    known = r"no sequence is named 'nope' \(known: demo, ripen\)"
    with pytest.raises(UnknownSequence, match=known):
        simulate(SEQUENCES, "nope", ADA, START, "UTC")


def test_bad_default_zone_is_a_config_error() -> None:
    """An unknown default time zone is reported, not a traceback from zoneinfo."""
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        simulate(SEQUENCES, "demo", ADA, START, "Mars/Olympus")


def test_skip_reason_for_a_list_and_a_missing_field() -> None:
    """The reason names each failing condition; a missing field says the lead has none."""
    step = Sequence.model_validate({"name": "x", "steps": [{
        "name": "s", "after": "0m", "email": {"template": "t.j2"},
        "when": {"industry": ["saas", "fintech"], "stage": "decision"},
    }]}).steps[0]
    assert skip_reason(step, {"stage": "decision"}) == (
        "when: industry is one of saas, fintech, lead has no industry"
    )
