"""`validate` reports everything it can: bad dates, steps that are never due, and the
template problems of a file whose schema also failed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.authoring.validate import validate_paths
from engine.domain.sequence import Sequence, check_lead_timezone
from engine.domain.timeline import simulate
from engine.errors import InvalidLead, ScheduleError

TEMPLATES = Path(__file__).resolve().parent.parent / "fixtures" / "broken" / "templates"
GOOD = "email: {template: good.md.j2}"


def check(tmp_path: Path, **files: str) -> list[str]:
    """Write each `name=text` as name.yaml and validate them all: the problems as text."""
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    _, problems = validate_paths([tmp_path], TEMPLATES, mailboxes=["sales"])
    return [str(p).removeprefix(f"{tmp_path}/") for p in problems]


def steps(*lines: str) -> str:
    return "mailbox: sales\nsteps:\n" + "\n".join(lines) + "\n"


def test_an_impossible_holiday_is_a_problem_on_its_line_and_other_files_still_validate(
        tmp_path: Path) -> None:
    """`holidays: [2026-13-45]` is one file:line problem; the next file's problem is reported."""
    problems = check(
        tmp_path,
        a="name: a\nsend_window: {holidays: [2026-12-25, 2026-13-45]}\n"
          + steps("  - {name: hello, after: 0m, " + GOOD + "}"),
        b="name: b\n" + steps("  - {name: hello, after: soon, " + GOOD + "}"),
    )
    assert problems[0] == ("a.yaml:2: holidays item 2: '2026-13-45' is not a date (month value "
                           "is outside expected range of 1-12); write dates like 2025-12-25")
    assert problems[1].startswith("b.yaml:4: 'soon' is not a duration")
    assert len(problems) == 2


def test_a_schema_problem_does_not_hide_the_template_problems_of_the_same_file(
        tmp_path: Path) -> None:
    """Two steps with one name, a missing template and a broken note: all three at once."""
    problems = check(tmp_path, twin="name: twin\n" + steps(
        "  - {name: hello, after: 0m, email: {template: missing.md.j2}}",
        "  - {name: hello, after: 1 day, task: {kind: call, note: '{{ lead.first_name '}}",
    ))
    assert problems[0] == "twin.yaml:4: template 'missing.md.j2' does not exist in " \
                          f"{TEMPLATES}/; create it, or fix the name"
    assert problems[1] == "twin.yaml:5: two steps are named 'hello'; step names must be unique"
    assert problems[2].startswith("twin.yaml:5: note: ")
    assert len(problems) == 3


def test_a_step_that_fails_the_schema_is_reported_once(tmp_path: Path) -> None:
    """The best-effort template check skips the broken step instead of reporting it again."""
    problems = check(tmp_path, one="name: one\n" + steps(
        "  - {name: hello, after: soon, email: {template: missing.md.j2}}",
        "  - {name: later, after: 1 day, " + GOOD + "}",
    ))
    assert len(problems) == 1 and "'soon' is not a duration" in problems[0]


def test_a_cron_that_never_fires_is_a_problem_on_its_line(tmp_path: Path) -> None:
    """`cron: "0 10 31 2 *"` (31 February) would never be due: validate says so."""
    problems = check(tmp_path, feb="name: feb\n" + steps(
        "  - name: monthly", "    cron: '0 10 31 2 *'", "    " + GOOD))
    assert problems == ["feb.yaml:5: step 'monthly' would never be due: cron '0 10 31 2 *' "
                        "never fires (a date that does not exist, like 31 February); fix its "
                        "day and month"]


@pytest.mark.parametrize("after", ["99999999 days", "99999999999999 minutes", "530 weeks"])
def test_an_after_beyond_ten_years_is_too_far_in_the_future(tmp_path: Path, after: str) -> None:
    """An `after` past the calendar's end, or just over ten years, is a problem on its line."""
    problems = check(tmp_path, far="name: far\n" + steps(
        "  - name: hello", f"    after: {after}", "    " + GOOD))
    assert problems == [f"far.yaml:5: step 'hello' is too far in the future: 'after: "
                        f"{after.split()[0]} {after.split()[1]}' puts it more than 10 years "
                        "after the touch before it (max 10 years)"]


def test_a_long_but_real_track_passes(tmp_path: Path) -> None:
    """A yearly step repeated ten times and a 500-week wait are fine."""
    problems = check(tmp_path, long="name: long\n" + steps(
        "  - {name: wait, after: 500 weeks, " + GOOD + "}",
        "  - {name: yearly, cron: '0 10 1 3 *', repeat: 10, " + GOOD + "}"))
    assert problems == []


def test_simulate_past_the_year_9999_is_a_schedule_error() -> None:
    """A start at the calendar's end is a clear ScheduleError, not an OverflowError."""
    seq = Sequence.model_validate({"name": "s", "steps": [
        {"name": "a", "after": "3 days", "email": {"template": "x.md.j2"}}]})
    with pytest.raises(ScheduleError, match="runs past the year 9999"):
        simulate({"s": seq}, "s", {"email": "a@example.com"},
                 datetime(9999, 12, 31, tzinfo=UTC), "UTC")


@pytest.mark.parametrize(("value", "message"), [
    (7, "timezone: a time zone is a name such as 'Europe/Berlin', not 7"),
    ("Nowhere/X", "timezone: unknown time zone 'Nowhere/X'"),
])
def test_a_lead_time_zone_that_is_not_a_zone_is_invalid_lead(value: object, message: str) -> None:
    """The one lead time-zone check refuses a number and an unknown name alike."""
    with pytest.raises(InvalidLead, match=message):
        check_lead_timezone(value)


def test_an_empty_lead_time_zone_means_the_default() -> None:
    """No zone is not an error: the sequence's default applies."""
    assert check_lead_timezone("") == "" and check_lead_timezone("Europe/Paris") == "Europe/Paris"


def test_a_duration_without_a_unit_is_a_problem_except_zero(tmp_path: Path) -> None:
    """`after: 3` meant days as often as minutes (it used to be 3 minutes, silently);
    `after: 0` means now in any unit."""
    problems = check(tmp_path, a="name: a\n" + steps(
        "  - {name: hello, after: 0, " + GOOD + "}",
        "  - {name: later, after: 3, " + GOOD + "}",
    ))
    assert problems == ["a.yaml:5: 3 has no unit; write e.g. '3m', '3h' or '3 days'"]


@pytest.mark.parametrize(("cron", "said"), [
    ("0 25 * * tue", "its hour field '25' is not valid (write 0-23)"),
    ("0 9 * *", "it has 4 fields; write five: minute hour day-of-month month day-of-week"),
    ("0 9 * 0 *", "its month field '0' is not valid (write 1-12 or jan-dec)"),
])
def test_a_bad_cron_names_the_field_that_is_wrong(tmp_path: Path, cron: str, said: str) -> None:
    """`0 25 * * tue` has five fields: the problem is the hour (the message used to say
    'write five fields')."""
    [problem] = check(tmp_path, a="name: a\nmailbox: sales\nsteps:\n"
                      f"  - {{name: monthly, cron: '{cron}', {GOOD}}}\n")
    assert problem.startswith(f"a.yaml:4: '{cron}' is not a cron expression: {said}")


def test_a_when_field_no_lead_has_is_a_problem(tmp_path: Path) -> None:
    """`when: {plna: pro}` (sample_lead has `plan`): named with a did-you-mean; it used to
    pass validate and skip the step for every lead. Columns and sample_lead fields pass."""
    problems = check(tmp_path, a="name: a\nsample_lead: {plan: pro}\n" + steps(
        "  - {name: hello, after: 0m, when: {stage: awareness, plan: pro}, " + GOOD + "}",
        "  - {name: later, after: 1 day, when: {plna: pro}, " + GOOD + "}",
    ))
    assert problems == ["a.yaml:6: when: 'plna' is not a lead field and the sample_lead does "
                        "not have it; did you mean 'plan'? If not, add it to sample_lead (leads "
                        "give it as a custom field)"]


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    """A sequence and a template saved as Latin-1: each problem names the file, the line of
    the first bad byte and how to fix it (it was Python's codec error with a position)."""
    seqs, templates = tmp_path / "seqs", tmp_path / "templates"
    seqs.mkdir()
    templates.mkdir()
    (seqs / "a.yaml").write_bytes(b"name: a\nmailbox: sales\n# Ren\xe9e\nsteps: []\n")
    (seqs / "b.yaml").write_text("name: b\n" + steps(
        "  - {name: hello, after: 0m, email: {template: latin.md.j2}}"))
    (templates / "latin.md.j2").write_bytes(b"---\nsubject: Hi\n---\nHi Ren\xe9e\n")
    _, problems = validate_paths([seqs], templates, mailboxes=["sales"])
    said = "the file is not UTF-8 text (byte 0xe9); save it as UTF-8 in your editor"
    assert [str(p) for p in problems] == [f"{seqs / 'a.yaml'}:3: {said}",
                                          f"{templates / 'latin.md.j2'}:4: {said}"]
