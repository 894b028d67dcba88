"""Enrolling leads: one at a time and from CSV rows, idempotent, validated, suppressions kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import InvalidLead, Suppressed, UnknownSequence
from tests.servers.engine_env import Env, make_env, sequence


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def test_enrolling_creates_the_lead_and_schedules_the_first_touch(env: Env) -> None:
    """A new address: lead created with its fields, first touch due now (after: 0m)."""
    out = env.enroll("Ada@Example.COM", first_name="Ada", company="Engines", plan="pro")
    assert out.status == "enrolled" and out.due_at == env.clock.now()
    lead = env.store.leads.get("ada@example.com")
    assert lead is not None
    assert (lead.email, lead.first_name, lead.company) == ("ada@example.com", "Ada", "Engines")
    assert lead.fields == {"plan": "pro"}


def test_a_live_enrollment_is_not_duplicated_but_fields_merge(env: Env) -> None:
    """Enrolling again: `already`, one enrollment, new fields merged into the lead."""
    env.enroll("ada@example.com", first_name="Ada")
    again = env.enroll("ada@example.com", stage="decision", plan="pro")
    assert again.status == "already"
    assert len(env.store.reports.enrollments()) == 1
    lead = env.store.leads.get("ada@example.com")
    assert lead is not None
    assert (lead.first_name, lead.stage, lead.fields) == ("Ada", "decision", {"plan": "pro"})


def test_a_finished_lead_can_be_enrolled_again(tmp_path: Path) -> None:
    """Only live enrollments block: after finishing, a lead may start the sequence anew."""
    one = sequence(steps=[{"name": "only", "after": "0m", "send_window": "any",
                           "email": {"template": "hello.md.j2"}}])
    env = make_env(tmp_path, [one])
    env.enroll("ada@example.com")
    env.run_once()
    assert env.enroll("ada@example.com").status == "enrolled"


def test_an_invalid_address_is_refused(env: Env) -> None:
    """Syntax is checked (no DNS); the error says what is wrong."""
    with pytest.raises(InvalidLead, match="not a valid email address"):
        env.enroll("ada@@example")


def test_an_unknown_time_zone_is_refused(env: Env) -> None:
    """The lead's zone must be an IANA name."""
    with pytest.raises(InvalidLead, match="timezone"):
        env.enroll("ada@example.com", timezone="Mars/Olympus")


def test_a_suppressed_address_is_refused(env: Env) -> None:
    """Suppressed addresses are never enrolled; the message names the reason."""
    env.store.leads.suppress("ada@example.com", "unsubscribe", "test", env.clock.now())
    with pytest.raises(Suppressed, match="unsubscribe"):
        env.enroll("ada@example.com")


def test_an_unknown_sequence_is_refused(env: Env) -> None:
    """A misspelt sequence name is a clear error, not a silent no-op."""
    with pytest.raises(UnknownSequence, match="welcome"):
        env.enroll("ada@example.com", seq="welcom")


def test_enrolling_wakes_the_dispatcher(tmp_path: Path) -> None:
    """The sender is told at once (speed to lead), not at its next poll."""
    env = make_env(tmp_path)
    woken: list[bool] = []
    env.enroller.wake = lambda: woken.append(True)
    env.enroll("ada@example.com")
    env.enroll("ada@example.com")  # already enrolled: nothing new to send
    assert woken == [True]


def test_rows_are_enrolled_with_duplicates_merged_and_rejects_reported(env: Env) -> None:
    """An import: good rows enrolled, repeated addresses merged, bad rows listed by line."""
    env.store.leads.suppress("gone@example.com", "hard_bounce", "test", env.clock.now())
    rows = [
        (2, {"email": "a@example.com", "first_name": "A"}),
        (3, {"email": "not an address"}),
        (4, {"email": "A@example.com", "company": "Acme"}),
        (5, {"email": "b@example.com", "timezone": "Nowhere/Land"}),
        (6, {"email": "gone@example.com"}),
        (7, {"email": "c@example.com"}),
    ]
    report = env.enroller.enroll_rows("welcome", rows, source="csv:test.csv")
    assert (report.enrolled, report.duplicates, report.already) == (2, 1, 0)
    assert [(r.row, r.email) for r in sorted(report.rejected, key=lambda r: r.row)] == [
        (3, "not an address"), (5, "b@example.com"), (6, "gone@example.com")]
    lead = env.store.leads.get("a@example.com")
    assert lead is not None and (lead.first_name, lead.company) == ("A", "Acme")


def test_rows_spanning_batches_are_counted_once(env: Env) -> None:
    """The same address in two batches is a duplicate, not a second enrollment."""
    rows = [(i + 2, {"email": f"l{i % 1500}@example.com"}) for i in range(2100)]
    report = env.enroller.enroll_rows("welcome", rows, source="csv")
    assert (report.enrolled, report.duplicates) == (1500, 600)
    assert len(env.store.reports.enrollments(limit=5000)) == 1500


def test_progress_counts_every_row_rejected_ones_included(env: Env) -> None:
    """Progress reaches the number of rows read, whatever became of them: 2,500 rows, one in
    five not an address, one in ten a repeat."""
    def row(i: int) -> dict[str, str]:
        return {"email": "bad" if i % 5 == 0 else f"l{i - 1 if i % 10 == 3 else i}@x.org"}

    told: list[int] = []
    report = env.enroller.enroll_rows("welcome", [(i + 2, row(i)) for i in range(2500)],
                                      source="csv", progress=told.append)
    assert sum(told) == 2500 and (len(report.rejected), report.duplicates) == (500, 250)
    assert told[:2] == [1000, 1000]  # told as it goes, not only at the end


def test_first_touch_respects_a_send_window_in_the_lead_zone(tmp_path: Path) -> None:
    """A windowed first step for a lead in Tokyo waits for Tokyo's working hours."""
    steps = [{"name": "first", "after": "0m", "email": {"template": "hello.md.j2"}}]
    seq = sequence(steps=steps, timezone="lead",
                   send_window={"days": "mon-fri", "hours": "09:00-17:00"})
    env = make_env(tmp_path, [seq])
    out = env.enroll("ada@example.com", timezone="Asia/Tokyo")  # 09:00 UTC = 18:00 in Tokyo
    assert out.due_at is not None and out.due_at > env.clock.now() + timedelta(hours=14)
