"""Loading sequences: YAML with lines, the catalog, the examples and the template context."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.authoring import starter
from engine.authoring.catalog import load_catalog
from engine.authoring.validate import validate_paths
from engine.authoring.yamlload import load_document
from engine.domain.context import lead_view, sample_lead, template_context
from engine.domain.timeline import simulate
from engine.errors import AuthoringError, UnknownSequence

ROOT = Path(__file__).resolve().parent.parent.parent
FOOTER = "{{ sender.postal_address }} <{{ unsubscribe_url }}>\n"


def project(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A sequences/ and templates/ pair holding `files` plus one good template."""
    seqs, tpls = tmp_path / "sequences", tmp_path / "templates"
    seqs.mkdir()
    tpls.mkdir()
    (tpls / "t.md.j2").write_text('---\nsubject: "Hi"\n---\nHi\n' + FOOTER)
    for name, text in files.items():
        (seqs / name).write_text(text)
    return seqs, tpls


def sequence_yaml(name: str, extra: str = "", template: str = "t.md.j2") -> str:
    return (f"name: {name}\nmailbox: sales\n{extra}steps:\n  - name: hello\n    after: 0m\n"
            f"    email: {{template: {template}}}\n")


# --- YAML ------------------------------------------------------------------------------

def test_yaml_keeps_the_line_of_every_key_and_item() -> None:
    """Keys and list items map to their 1-based lines."""
    doc, problems = load_document("x.yaml", "name: a\nsteps:\n  - name: b\n    after: 1d\n")
    assert doc is not None and not problems
    assert doc.lines[("steps", 0)] == 3
    assert doc.lines[("steps", 0, "after")] == 4
    assert doc.line(("steps", 0, "email", "template")) == 3  # nearest existing ancestor


def test_yaml_does_not_turn_words_and_times_into_booleans_or_numbers() -> None:
    """`NO` (Norway) stays text, `10:30` is not 630, `010` is not octal 8."""
    doc, _ = load_document("x.yaml", "country: NO\nok: yes\nat: 10:30\nzip: 010\nflag: true\n")
    assert doc is not None
    assert doc.data == {"country": "NO", "ok": "yes", "at": "10:30", "zip": "010", "flag": True}


def test_yaml_duplicate_key_is_a_problem_at_the_second_line() -> None:
    """A key written twice is reported; the rest of the file still loads."""
    doc, problems = load_document("x.yaml", "name: a\nmailbox: x\nname: b\n")
    assert doc is not None
    assert [str(p) for p in problems] == [
        "x.yaml:3: duplicate key 'name' (already on line 1); keep one of them"
    ]


def test_anchors_under_x_keys_can_be_merged_into_steps(tmp_path: Path) -> None:
    """`x-` keys are ignored, and `<<: *anchor` merges their contents into a step."""
    seqs, tpls = project(tmp_path, {"a.yaml": (
        "name: a\nx-common: &common {after: 2 days, email: {template: t.md.j2}}\n"
        "steps:\n  - <<: *common\n    name: one\n"
    )})
    good, problems = validate_paths([seqs], tpls)
    assert problems == [] and str(good["a"].steps[0].after) == "2 days"


# --- the examples ----------------------------------------------------------------------

def test_example_sequences_pass_validation() -> None:
    """sequences/ and templates/ of the repository are valid with a 'sales' mailbox."""
    catalog = load_catalog(ROOT / "sequences", ROOT / "templates", mailboxes=["sales"])
    assert [str(p) for p in catalog.problems] == []
    assert set(catalog.sequences) == {"demo-request", "ripen", "webinar-followup"}


def test_demo_request_is_a_three_week_sequence_ending_in_ripen() -> None:
    """demo-request: first touch at once, >= 6 touches over about 3 weeks, a call, a breakup."""
    catalog = load_catalog(ROOT / "sequences", ROOT / "templates")
    seq = catalog.get("demo-request")
    assert seq.steps[0].send_window is None and seq.steps[0].after.amount == 0
    assert any(s.task is not None and s.task.kind == "call" for s in seq.steps)
    assert seq.steps[-1].name == "breakup" and seq.on_finish.enroll == "ripen"
    staged = [s.email.template for s in seq.steps if s.email and isinstance(s.email.template, dict)]
    assert any(set(t) == {"awareness", "consideration", "decision"} for t in staged)
    start = datetime(2025, 3, 3, 9, tzinfo=UTC)
    rows = [e for e in simulate(catalog.sequences, "demo-request", lead_view(sample_lead()),
                                start, "UTC") if e.sequence == "demo-request"]
    assert len(rows) >= 6
    assert 14 <= (rows[-1].at - rows[0].at).days <= 28


def test_ripen_is_monthly_for_a_year() -> None:
    """ripen: one step on the first Tuesday of the month, 12 times, with stage variants."""
    seq = load_catalog(ROOT / "sequences", ROOT / "templates").get("ripen")
    (step,) = seq.steps
    assert (step.cron, step.repeat) == ("0 10 * * tue#1", 12)
    assert set(step.email.template) == {"awareness", "consideration", "decision"}


def test_starter_project_passes_validation(tmp_path: Path) -> None:
    """`nurture init` writes a project whose sequences validate."""
    starter.write_project(tmp_path)
    catalog = load_catalog(tmp_path / "sequences", tmp_path / "templates", mailboxes=["sales"])
    assert catalog.problems == [] and set(catalog.sequences) == {"welcome"}


# --- the catalog -----------------------------------------------------------------------

def test_one_bad_file_never_hides_the_others(tmp_path: Path) -> None:
    """Good files load; every broken file's problems are reported."""
    seqs, tpls = project(tmp_path, {
        "a.yaml": sequence_yaml("a"),
        "b.yaml": "name: b\nsteps: [\n",
        "c.yaml": sequence_yaml("c", "timezone: Nowhere/Land\n"),
    })
    catalog = load_catalog(seqs, tpls)
    assert set(catalog.sequences) == {"a"}
    assert {Path(p.path).name for p in catalog.problems} == {"b.yaml", "c.yaml"}


def test_getting_a_broken_sequence_explains_its_problems(tmp_path: Path) -> None:
    """catalog.get on a broken sequence raises AuthoringError with that file's problems."""
    seqs, tpls = project(tmp_path, {"c.yaml": sequence_yaml("c", "timezone: Nowhere/Land\n")})
    with pytest.raises(AuthoringError, match="unknown time zone 'Nowhere/Land'"):
        load_catalog(seqs, tpls).get("c")


def test_getting_an_unknown_sequence_suggests_a_name(tmp_path: Path) -> None:
    """catalog.get on a misspelt name suggests the close one."""
    seqs, tpls = project(tmp_path, {"a.yaml": sequence_yaml("demo")})
    with pytest.raises(UnknownSequence, match="did you mean 'demo'"):
        load_catalog(seqs, tpls).get("deom")


def test_on_finish_loop_across_files_is_a_problem(tmp_path: Path) -> None:
    """a -> b -> a would keep a lead forever: both files are reported."""
    seqs, tpls = project(tmp_path, {
        "a.yaml": sequence_yaml("a", "on_finish: {enroll: b}\n"),
        "b.yaml": sequence_yaml("b", "on_finish: {enroll: a}\n"),
    })
    catalog = load_catalog(seqs, tpls)
    assert [p.message for p in catalog.problems] == [
        "on_finish makes a loop (a -> b -> a): a lead would never leave it; end one of them",
        "on_finish makes a loop (b -> a -> b): a lead would never leave it; end one of them",
    ]


def test_validating_one_file_resolves_on_finish_in_its_folder(tmp_path: Path) -> None:
    """`nurture validate seqs/a.yaml` knows the sequence next to it that a enrolls into."""
    seqs, tpls = project(tmp_path, {
        "a.yaml": sequence_yaml("a", "on_finish: {enroll: b}\n"), "b.yaml": sequence_yaml("b"),
    })
    good, problems = validate_paths([seqs / "a.yaml"], tpls)
    assert problems == [] and set(good) == {"a"}


def test_mailboxes_are_not_checked_when_none_are_configured(tmp_path: Path) -> None:
    """Without a mailbox list, any mailbox name passes."""
    seqs, tpls = project(tmp_path, {"a.yaml": sequence_yaml("a").replace("sales", "other")})
    assert validate_paths([seqs], tpls)[1] == []
    assert len(validate_paths([seqs], tpls, mailboxes=["sales"])[1]) == 1


def test_a_broken_template_shared_by_two_sequences_is_reported_once(tmp_path: Path) -> None:
    """A template syntax error is one problem however many steps use it."""
    seqs, tpls = project(tmp_path, {
        "a.yaml": sequence_yaml("a", template="bad.md.j2"),
        "b.yaml": sequence_yaml("b", template="bad.md.j2"),
    })
    (tpls / "bad.md.j2").write_text('---\nsubject: "Hi"\n---\n{% if %}\n')
    _, problems = validate_paths([seqs], tpls)
    assert len(problems) == 1 and problems[0].line == 4


def test_missing_path_is_a_problem(tmp_path: Path) -> None:
    """A path that does not exist is reported, not ignored."""
    _, problems = validate_paths([tmp_path / "nope.yaml"], tmp_path)
    assert [p.message for p in problems] == ["no such file or directory"]


# --- the template context --------------------------------------------------------------

def test_context_shows_next_touch_in_the_leads_zone() -> None:
    """next_touch_at is an aware datetime in the lead's zone."""
    seq = load_catalog(ROOT / "sequences", ROOT / "templates").get("ripen")
    ctx = template_context(sample_lead(), {}, seq, seq.steps[0], 3,
                           datetime(2025, 7, 1, 9, tzinfo=UTC), "u", ZoneInfo("America/New_York"))
    assert ctx["next_touch_at"].hour == 5 and str(ctx["next_touch_at"].tzinfo) == "America/New_York"
    assert ctx["touch_number"] == 3 and ctx["step"] == {"name": "monthly-note"}
    assert ctx["sequence"]["name"] == "ripen" and ctx["sender"]["postal_address"] == ""


def test_a_custom_field_never_hides_a_lead_column() -> None:
    """A custom field named `email` cannot replace the lead's real address."""
    view = lead_view({"email": "a@example.com", "fields": {"email": "evil@example.com", "x": 1}})
    assert view["email"] == "a@example.com" and view["x"] == 1
    assert view["fields"] == {"email": "evil@example.com", "x": 1}
