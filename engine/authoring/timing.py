"""The timing check of one sequence: every step falls due, and not absurdly far away.

Each step's due time is computed for the sample lead from a fixed start, with the same
schedule code the daemon uses, so a cron that never fires (31 February) or an `after` that
overflows the calendar is a `file:line` problem at `validate`, not a crash of `nurture run`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.authoring.checks import Slot, all_slots
from engine.authoring.yamlload import Document
from engine.domain.context import sample_lead
from engine.domain.schedule import due_at
from engine.domain.sequence import Sequence, Step
from engine.errors import Problem, ScheduleError

SAMPLE_START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)  # a Monday morning
MAX_GAP = timedelta(days=3653)  # ten years between one touch and the next
MAX_OCCURRENCES = 50  # a repeating step's gaps repeat; the first ones show a problem


def check_timing(seq: Sequence, doc: Document, default_timezone: str,
                 slots: list[Slot] | None = None) -> list[Problem]:
    """A problem for each step that would never be due or is due too far in the future."""
    zone = seq.zone(sample_lead(seq.sample_lead).get("timezone"), default_timezone)
    done_at, problems = SAMPLE_START, []
    for slot in slots if slots is not None else all_slots(seq):
        for occurrence in range(min(slot.step.occurrences, MAX_OCCURRENCES)):
            try:
                due = due_at(slot.step, seq, done_at, occurrence, zone, "validate")
            except ScheduleError as exc:
                problems.append(_problem(doc, slot, _never(slot.step, exc)))
                break
            except OverflowError:  # past the year 9999
                due = None
            if due is None or due - done_at > MAX_GAP:
                problems.append(_problem(doc, slot, _too_far(slot.step)))
                break
            done_at = due
    return problems


def _problem(doc: Document, slot: Slot, message: str) -> Problem:
    key = "cron" if slot.step.cron is not None else "after"
    return doc.problem(("steps", slot.index, key), message)


def _never(step: Step, exc: ScheduleError) -> str:
    if step.cron is not None and "no next firing" in exc.message:
        return (f"step '{step.name}' would never be due: cron '{step.cron}' never fires "
                "(a date that does not exist, like 31 February); fix its day and month")
    return f"step '{step.name}' would never be due: {exc.message}"


def _too_far(step: Step) -> str:
    timing = f"cron '{step.cron}'" if step.cron is not None else f"'after: {step.after}'"
    return (f"step '{step.name}' is too far in the future: {timing} puts it more than 10 "
            "years after the touch before it (max 10 years)")
