"""Which step comes next and when: first_due, after_done, upcoming."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from engine.domain.progress import Next, after_done, first_due, upcoming
from engine.domain.sequence import Sequence

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def email(name: str, **rule: object) -> dict:
    return {"name": name, "email": {"template": f"{name}.md.j2"}, **rule}


def make(*steps: dict, **extra: object) -> Sequence:
    return Sequence.model_validate({"name": "s", "steps": list(steps), "jitter": "0m", **extra})


RIPEN = make(
    email("welcome", after="0m", send_window="any"),
    email("monthly", cron="0 10 * * tue#1", repeat=12),
    email("last", after="1 day"),
)


def test_first_due_of_an_immediate_step_is_the_enrollment_time() -> None:
    """An `after: 0m`, `send_window: any` first step is due the moment the lead enrolls."""
    enrolled = utc(2026, 1, 10, 23, 0)  # a Saturday
    assert first_due(RIPEN, enrolled, BERLIN, "1") == Next(0, 0, enrolled)


def test_first_due_of_a_cron_step() -> None:
    """A sequence starting with a cron step is first due at its next firing."""
    seq = make(email("monthly", cron="0 10 * * tue#1", repeat=2))
    assert first_due(seq, utc(2026, 3, 10), BERLIN, "1") == Next(0, 0, utc(2026, 4, 7, 8))


def test_after_counts_from_when_the_previous_step_was_done() -> None:
    """A "2 days" step counts from the moment the previous touch was done, not planned."""
    seq = make(email("a", after="0m"), email("b", after="2 days"))
    done = datetime(2026, 1, 12, 11, 7, tzinfo=NY)
    assert after_done(seq, 0, 0, done, NY, "1") == Next(1, 0, utc(2026, 1, 14, 16, 7))


def test_cron_repeat_twelve_gives_twelve_occurrences_then_the_next_step() -> None:
    """A cron step with repeat: 12 runs 12 first Tuesdays at 10:00 local, then the next step."""
    nxt = first_due(RIPEN, utc(2026, 1, 1), BERLIN, "1")
    walked = []
    while nxt is not None:
        walked.append(nxt)
        nxt = after_done(RIPEN, nxt.step_index, nxt.occurrence, nxt.due_at, BERLIN, "1")
    monthly = [n for n in walked if n.step_index == 1]
    assert [n.occurrence for n in monthly] == list(range(12))
    assert [n.due_at for n in monthly] == [
        utc(2026, 1, 6, 9), utc(2026, 2, 3, 9), utc(2026, 3, 3, 9), utc(2026, 4, 7, 8),
        utc(2026, 5, 5, 8), utc(2026, 6, 2, 8), utc(2026, 7, 7, 8), utc(2026, 8, 4, 8),
        utc(2026, 9, 1, 8), utc(2026, 10, 6, 8), utc(2026, 11, 3, 9), utc(2026, 12, 1, 9),
    ]
    assert walked[-1] == Next(2, 0, utc(2026, 12, 2, 9))
    assert len(walked) == 14


def test_after_the_last_step_the_sequence_is_finished() -> None:
    """after_done on the last step returns None."""
    assert after_done(RIPEN, 2, 0, utc(2026, 12, 2, 9), BERLIN, "1") is None


def test_last_occurrence_of_a_final_cron_step_finishes() -> None:
    """The final occurrence (repeat - 1) of a final cron step finishes the sequence."""
    seq = make(email("monthly", cron="0 10 1 * *", repeat=3, send_window="any"))
    assert after_done(seq, 0, 1, utc(2026, 2, 1, 9), BERLIN, "1") == Next(
        0, 2, utc(2026, 3, 1, 9)
    )
    assert after_done(seq, 0, 2, utc(2026, 3, 1, 9), BERLIN, "1") is None


def test_a_step_index_past_the_end_finishes() -> None:
    """An enrollment whose sequence lost steps since (index past the end) is finished."""
    assert after_done(RIPEN, 7, 0, utc(2026, 1, 1), BERLIN, "1") is None


def test_jitter_key_changes_the_time_only_when_jitter_applies() -> None:
    """Two enrollments moved to the same window opening get different, stable times."""
    seq = Sequence.model_validate({"name": "s", "steps": [email("a", after="0m")]})
    saturday = utc(2026, 1, 10, 12)
    one = first_due(seq, saturday, NY, "1")
    two = first_due(seq, saturday, NY, "2")
    assert one is not None and two is not None
    assert one.due_at != two.due_at
    assert one == first_due(seq, saturday, NY, "1")


def test_upcoming_passes_over_steps_whose_when_is_false() -> None:
    """next_touch_at skips a decision-only step for an awareness lead, as the sender would."""
    seq = make(
        email("a", after="0m", send_window="any"),
        email("roi", after="1 day", send_window="any", when={"stage": "decision"}),
        email("c", after="2 days", send_window="any"),
    )
    done = utc(2026, 1, 5, 9)
    assert upcoming(seq, 0, 0, done, NY, "1", {"stage": "awareness"}) == Next(
        2, 0, utc(2026, 1, 8, 9)
    )
    assert upcoming(seq, 0, 0, done, NY, "1", {"stage": "decision"}) == Next(
        1, 0, utc(2026, 1, 6, 9)
    )


def test_upcoming_is_none_when_nothing_applies() -> None:
    """When every remaining step is skipped, there is no next touch."""
    seq = make(
        email("a", after="0m"),
        email("b", after="1 day", when={"stage": "decision"}),
    )
    assert upcoming(seq, 0, 0, utc(2026, 1, 5, 9), NY, "1", {"stage": "awareness"}) is None
